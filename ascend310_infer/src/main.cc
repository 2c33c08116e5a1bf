/**
 * CPC inference with MindSpore Lite: load an exported MINDIR, run it over preprocess.py's .bin
 * batches, write each output as a .bin file and record the predict latency.
 *
 *   main --mindir_path cpc_classifier.mindir --input_path preprocess_Result --result_path result_Files
 *        [--device_type Ascend|GPU|CPU] [--device_id 0]
 *
 * The same program serves an Ascend 310 (AscendDeviceInfo), a GPU or a plain CPU edge box; it
 * does no preprocessing: the inputs are already the model's float32 tensors (src/deploy/infer_io.py).
 * Outputs: result_path/<name>_<k>.bin for output k of input batch <name>.bin, and
 * result_path/latency.json (the same keys as tools/mindir_infer.py writes).
 * Every input file is checked (present, of the model input's size) before the first predict, and
 * a run that fails removes the result files it wrote: an error leaves no partial results behind.
 * Exit 0 ok, 2 bad arguments or inputs (one "error:" line), 1 the runtime failed.
 */
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
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

// A clear message unless every model input is a float32 tensor of a fixed shape (what preprocess.py writes).
bool CheckInputs(const std::vector<mindspore::MSTensor> &inputs, std::string *error) {
  if (inputs.empty()) {
    *error = "the model has no inputs";
    return false;
  }
  for (size_t k = 0; k < inputs.size(); ++k) {
    const std::vector<int64_t> shape = inputs[k].Shape();
    if (inputs[k].DataType() != mindspore::DataType::kNumberTypeFloat32) {
      *error = "model input " + std::to_string(k) + " (" + inputs[k].Name() + ") is not float32 (data type " +
               std::to_string(static_cast<int>(inputs[k].DataType())) + "); preprocess.py writes float32 inputs";
      return false;
    }
    if (shape.empty() || std::any_of(shape.begin(), shape.end(), [](int64_t d) { return d <= 0; })) {
      *error = "model input " + std::to_string(k) + " (" + inputs[k].Name() + ") has the dynamic shape " +
               ShapeText(shape) + "; export the model with a fixed --batch_size";
      return false;
    }
  }
  return true;
}

// Every input file of every batch is there and holds exactly its model input's bytes.
bool CheckInputFiles(const std::string &input_path, const std::vector<std::string> &names,
                     const std::vector<mindspore::MSTensor> &inputs, std::string *error) {
  for (size_t k = 0; k < inputs.size(); ++k) {
    for (const std::string &name : names) {
      const std::string path = JoinPath(InputDir(input_path, k), name);
      long long size = FileSize(path);
      if (size < 0) {
        *error = "cannot read input file " + path + (k > 0 ? " (the model has " + std::to_string(inputs.size()) +
                                                              " inputs)" : std::string());
        return false;
      }
      if (static_cast<size_t>(size) != inputs[k].DataSize()) {
        *error = path + " holds " + std::to_string(size) + " bytes; model input " + std::to_string(k) + " " +
                 ShapeText(inputs[k].Shape()) + " needs " + std::to_string(inputs[k].DataSize());
        return false;
      }
    }
  }
  return true;
}

// Fills every model input with its file of batch `name`; false (and a message) if a file cannot be read.
bool LoadInputs(const std::string &input_path, const std::string &name, std::vector<mindspore::MSTensor> *inputs,
                std::string *error) {
  for (size_t k = 0; k < inputs->size(); ++k) {
    mindspore::MSTensor &tensor = (*inputs)[k];
    const std::string path = JoinPath(InputDir(input_path, k), name);
    std::vector<char> data;
    if (!ReadFile(path, &data) || data.size() != tensor.DataSize()) {
      *error = "cannot read input file " + path + " (" + std::to_string(tensor.DataSize()) + " bytes)";
      return false;
    }
    void *buffer = tensor.MutableData();
    if (buffer == nullptr) {
      *error = "the runtime gave no buffer for model input " + std::to_string(k);
      return false;
    }
    std::memcpy(buffer, data.data(), data.size());
  }
  return true;
}

void RemoveFiles(const std::vector<std::string> &paths) {
  for (const std::string &path : paths) {
    std::remove(path.c_str());
  }
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

bool WriteLatency(const Options &options, const std::vector<double> &latencies_ms) {
  const double total = std::accumulate(latencies_ms.begin(), latencies_ms.end(), 0.0);
  std::ostringstream json;
  json << "{\n  \"runner\": \"mindspore_lite\",\n  \"device_type\": \"" << options.device_type << "\",\n"
       << "  \"batches\": " << latencies_ms.size() << ",\n"
       << "  \"mean_ms\": " << total / latencies_ms.size() << ",\n"
       << "  \"median_ms\": " << Median(latencies_ms) << ",\n"
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
  if (FileSize(options.mindir_path) <= 0) {
    std::cerr << "error: model file not found or empty: " << options.mindir_path << std::endl;
    return kUserError;
  }
  std::vector<std::string> names;
  if (!ListBinFiles(InputDir(options.input_path, 0), &names) || names.empty()) {
    std::cerr << "error: no .bin input files in " << InputDir(options.input_path, 0) << " (run preprocess.py first)"
              << std::endl;
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
  if (!CheckInputs(inputs, &error) || !CheckInputFiles(options.input_path, names, inputs, &error)) {
    std::cerr << "error: " << error << std::endl;
    return kUserError;
  }
  // created only once the inputs are known good: a refused run leaves no folder behind
  if (!MakeDirs(options.result_path) || access(options.result_path.c_str(), W_OK | X_OK) != 0) {
    std::cerr << "error: cannot create or write the result folder " << options.result_path << std::endl;
    return kUserError;
  }
  std::vector<double> latencies_ms;
  std::vector<std::string> written;
  const auto fail = [&written](const std::string &message) {
    RemoveFiles(written);
    std::cerr << "error: " << message << std::endl;
    return kRunError;
  };
  for (const std::string &name : names) {
    if (!LoadInputs(options.input_path, name, &inputs, &error)) {
      return fail(error);
    }
    std::vector<mindspore::MSTensor> outputs;
    const auto start = std::chrono::steady_clock::now();
    status = model.Predict(inputs, &outputs);
    const auto end = std::chrono::steady_clock::now();
    if (status != mindspore::kSuccess) {
      return fail("predict failed on " + name + ": " + status.ToString());
    }
    latencies_ms.push_back(std::chrono::duration<double, std::milli>(end - start).count());
    for (size_t k = 0; k < outputs.size(); ++k) {
      const std::string path = JoinPath(options.result_path, ResultName(name, k));
      const std::shared_ptr<const void> data = outputs[k].Data();  // held while it is written
      if (data == nullptr) {
        return fail("the runtime gave no data for output " + std::to_string(k) + " of " + name);
      }
      if (!WriteFileAtomically(path, data.get(), outputs[k].DataSize())) {
        return fail("cannot write " + path);
      }
      written.push_back(path);
    }
  }
  if (!WriteLatency(options, latencies_ms)) {
    return fail("cannot write " + JoinPath(options.result_path, "latency.json"));
  }
  std::cout << names.size() << " batches -> " << options.result_path << "; predict "
            << std::accumulate(latencies_ms.begin(), latencies_ms.end(), 0.0) / latencies_ms.size()
            << " ms per batch on average" << std::endl;
  return 0;
}
