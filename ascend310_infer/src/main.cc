/**
 * CPC inference with MindSpore Lite: load an exported MINDIR, run it over preprocess.py's .bin
 * batches, write each output as a .bin file and record the predict latency.
 *
 *   main --mindir_path cpc_classifier.mindir --input_path preprocess_Result --result_path result_Files
 *        [--device_type Ascend|GPU|CPU] [--device_id 0]
 *
 * The same program serves an Ascend 310 (AscendDeviceInfo), a GPU or a plain CPU edge box; it
 * does no preprocessing: the inputs are already the model's float32 tensors (src/infer_io.py).
 * Outputs: result_path/<name>_<k>.bin for output k of input batch <name>.bin, and
 * result_path/latency.json (the same keys as src/mindir_infer.py writes).
 */
#include <algorithm>
#include <chrono>
#include <cstring>
#include <iostream>
#include <memory>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "include/api/context.h"
#include "include/api/model.h"
#include "include/api/status.h"
#include "include/api/types.h"
#include "inc/utils.h"

namespace {

constexpr int kUserError = 2;
constexpr int kRunError = 1;

std::shared_ptr<mindspore::Context> MakeContext(const Options &options) {
  auto context = std::make_shared<mindspore::Context>();
  auto &devices = context->MutableDeviceInfo();
  if (options.device_type == "Ascend") {
    auto ascend = std::make_shared<mindspore::AscendDeviceInfo>();
    ascend->SetDeviceID(options.device_id);
    devices.push_back(ascend);
  } else if (options.device_type == "GPU") {
    auto gpu = std::make_shared<mindspore::GPUDeviceInfo>();
    gpu->SetDeviceID(options.device_id);
    devices.push_back(gpu);
  } else {
    devices.push_back(std::make_shared<mindspore::CPUDeviceInfo>());
  }
  return context;
}

std::string ShapeText(const std::vector<int64_t> &shape) {
  std::ostringstream text;
  text << "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    text << (i ? ", " : "") << shape[i];
  }
  text << "]";
  return text.str();
}

// Fills every model input with its file of batch `name`; false (and a message) on a missing or mis-sized file.
bool LoadInputs(const std::string &input_path, const std::string &name, std::vector<mindspore::MSTensor> *inputs) {
  for (size_t k = 0; k < inputs->size(); ++k) {
    mindspore::MSTensor &tensor = (*inputs)[k];
    const std::string path = JoinPath(InputDir(input_path, k), name);
    std::vector<char> data;
    if (!ReadFile(path, &data)) {
      std::cerr << "error: cannot read input file " << path << std::endl;
      return false;
    }
    if (data.size() != tensor.DataSize()) {
      std::cerr << "error: " << path << " holds " << data.size() << " bytes; model input " << k << " "
                << ShapeText(tensor.Shape()) << " needs " << tensor.DataSize() << std::endl;
      return false;
    }
    std::memcpy(tensor.MutableData(), data.data(), data.size());
  }
  return true;
}

bool WriteLatency(const Options &options, const std::vector<double> &latencies_ms) {
  const double total = std::accumulate(latencies_ms.begin(), latencies_ms.end(), 0.0);
  std::ostringstream json;
  json << "{\n  \"runner\": \"mindspore_lite\",\n  \"device_type\": \"" << options.device_type << "\",\n"
       << "  \"batches\": " << latencies_ms.size() << ",\n"
       << "  \"mean_ms\": " << total / latencies_ms.size() << ",\n"
       << "  \"min_ms\": " << *std::min_element(latencies_ms.begin(), latencies_ms.end()) << ",\n"
       << "  \"max_ms\": " << *std::max_element(latencies_ms.begin(), latencies_ms.end()) << "\n}\n";
  const std::string text = json.str();
  return WriteFileAtomically(JoinPath(options.result_path, "latency.json"), text.data(), text.size());
}

}  // namespace

int main(int argc, char **argv) {
  Options options;
  bool help = false;
  std::string error;
  if (!ParseOptions(argc, argv, &options, &help, &error)) {
    std::cerr << "error: " << error << "\n" << kUsage;
    return kUserError;
  }
  if (help) {
    std::cout << kUsage;
    return 0;
  }
  std::vector<std::string> names;
  if (!ListBinFiles(InputDir(options.input_path, 0), &names) || names.empty()) {
    std::cerr << "error: no .bin input files in " << InputDir(options.input_path, 0) << " (run preprocess.py first)"
              << std::endl;
    return kUserError;
  }
  if (!MakeDir(options.result_path)) {
    std::cerr << "error: cannot create result folder " << options.result_path << std::endl;
    return kUserError;
  }

  mindspore::Model model;
  mindspore::Status status = model.Build(options.mindir_path, mindspore::kMindIR, MakeContext(options));
  if (status != mindspore::kSuccess) {
    std::cerr << "error: cannot build " << options.mindir_path << " on " << options.device_type << ": "
              << status.ToString() << std::endl;
    return kRunError;
  }
  std::vector<mindspore::MSTensor> inputs = model.GetInputs();
  std::vector<double> latencies_ms;
  for (const std::string &name : names) {
    if (!LoadInputs(options.input_path, name, &inputs)) {
      return kUserError;
    }
    std::vector<mindspore::MSTensor> outputs;
    const auto start = std::chrono::steady_clock::now();
    status = model.Predict(inputs, &outputs);
    const auto end = std::chrono::steady_clock::now();
    if (status != mindspore::kSuccess) {
      std::cerr << "error: predict failed on " << name << ": " << status.ToString() << std::endl;
      return kRunError;
    }
    latencies_ms.push_back(std::chrono::duration<double, std::milli>(end - start).count());
    for (size_t k = 0; k < outputs.size(); ++k) {
      const std::string path = JoinPath(options.result_path, ResultName(name, k));
      if (!WriteFileAtomically(path, outputs[k].MutableData(), outputs[k].DataSize())) {
        std::cerr << "error: cannot write " << path << std::endl;
        return kRunError;
      }
    }
  }
  if (!WriteLatency(options, latencies_ms)) {
    std::cerr << "error: cannot write " << JoinPath(options.result_path, "latency.json") << std::endl;
    return kRunError;
  }
  std::cout << names.size() << " batches -> " << options.result_path << "; predict "
            << std::accumulate(latencies_ms.begin(), latencies_ms.end(), 0.0) / latencies_ms.size()
            << " ms per batch on average" << std::endl;
  return 0;
}
