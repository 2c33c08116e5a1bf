/**
 * ONNX -> MINDIR for a MindSpore Lite runtime older than the exporting MindSpore.
 *
 *   convert --onnx_path cpc_classifier.onnx --output_path cpc_classifier_lite.mindir
 *
 * MindSpore 2.10 writes MindIR version 3; Lite 2.0 reads up to version 1 and its Model::Build
 * refuses ONNX. Its converter library (libmindspore_converter.so) reads the ONNX file export.py
 * writes and saves a MINDIR that runtime loads (graph optimisation off: the net stays as exported).
 * The file is written under a temporary name and renamed. Exit 0 ok, 2 bad arguments or input, 1
 * conversion failed.
 */
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "inc/lite_converter.h"
#include "inc/utils.h"

namespace {

constexpr int kUserError = 2;
constexpr int kRunError = 1;
const char kConvertUsage[] = "usage: convert --onnx_path FILE.onnx --output_path FILE.mindir\n";

std::vector<char> Chars(const std::string &text) { return std::vector<char>(text.begin(), text.end()); }

bool EndsWith(const std::string &text, const std::string &suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

int main(int argc, char **argv) {
  std::string onnx_path;
  std::string output_path;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kConvertUsage;
      return 0;
    }
    if ((arg == "--onnx_path" || arg == "--output_path") && i + 1 < argc) {
      (arg == "--onnx_path" ? onnx_path : output_path) = argv[++i];
    } else {
      std::cerr << "error: unexpected argument '" << arg << "'\n" << kConvertUsage;
      return kUserError;
    }
  }
  if (onnx_path.empty() || output_path.empty()) {
    std::cerr << "error: --onnx_path and --output_path are required\n" << kConvertUsage;
    return kUserError;
  }
  if (!EndsWith(output_path, ".mindir")) {
    std::cerr << "error: --output_path must end in .mindir, got '" << output_path << "'" << std::endl;
    return kUserError;
  }
  std::vector<char> probe;
  if (!ReadFile(onnx_path, &probe) || probe.empty()) {
    std::cerr << "error: cannot read ONNX file " << onnx_path << std::endl;
    return kUserError;
  }
  // the converter appends ".mindir" to the name it is given
  const std::string stem = output_path.substr(0, output_path.size() - 7);
  const std::string tmp_stem = stem + ".tmp-" + std::to_string(getpid());
  mindspore::Converter converter(mindspore::converter::kFmkTypeOnnx, Chars(onnx_path), Chars(tmp_stem), Chars(""));
  converter.SetSaveType(mindspore::kMindIR);
  converter.SetNoFusion(true);
  const mindspore::Status status = converter.Convert();
  const std::string written = tmp_stem + ".mindir";
  if (status != mindspore::kSuccess) {
    std::remove(written.c_str());
    std::cerr << "error: cannot convert " << onnx_path << ": " << status.ToString() << std::endl;
    return kRunError;
  }
  if (std::rename(written.c_str(), output_path.c_str()) != 0) {
    std::remove(written.c_str());
    std::cerr << "error: cannot write " << output_path << std::endl;
    return kRunError;
  }
  std::cout << "converted " << onnx_path << " -> " << output_path << std::endl;
  return 0;
}
