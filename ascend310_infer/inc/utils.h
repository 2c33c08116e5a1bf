/**
 * Helpers of the CPC inference program: command line, folders and raw .bin files.
 * The file layout is the one of src/deploy/infer_io.py (preprocess.py writes it, postprocess.py reads it).
 */
#ifndef CPC_ASCEND310_INFER_INC_UTILS_H_
#define CPC_ASCEND310_INFER_INC_UTILS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

struct Options {
  std::string mindir_path;           // MINDIR written by export.py
  std::string input_path;            // folder written by preprocess.py (00_data/, 01_data/, ...)
  std::string result_path;           // folder for <name>_<output>.bin and latency.json
  std::string device_type = "Ascend";  // Ascend | GPU | CPU
  uint32_t device_id = 0;
};

extern const char kUsage[];

// Parses --key=value or --key value. Returns false and sets *error on an unknown flag, a missing
// value or a missing required flag; sets *help when --help or -h is given.
bool ParseOptions(int argc, char **argv, Options *options, bool *help, std::string *error);

// dir/name, with exactly one '/' between them.
std::string JoinPath(const std::string &dir, const std::string &name);

// Folder of the model's input `index`: input_path/00_data, input_path/01_data, ...
std::string InputDir(const std::string &input_path, size_t index);

// Sorted names of the regular files ending in ".bin" in dir; false if dir cannot be read.
bool ListBinFiles(const std::string &dir, std::vector<std::string> *names);

// "digits_00000.bin", 0 -> "digits_00000_0.bin"
std::string ResultName(const std::string &input_name, size_t output_index);

// Creates dir and any missing parents (as os.makedirs(dir, exist_ok=True)); false if it is not a folder then.
bool MakeDirs(const std::string &dir);

// Size in bytes of a regular file; -1 if it is missing or not a regular file.
long long FileSize(const std::string &path);

bool ReadFile(const std::string &path, std::vector<char> *data);

// Writes under a temporary name and renames, so no half-written result is ever visible.
bool WriteFileAtomically(const std::string &path, const void *data, size_t size);

#endif  // CPC_ASCEND310_INFER_INC_UTILS_H_
