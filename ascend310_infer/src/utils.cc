#include "inc/utils.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>

const char kUsage[] =
    "usage: main --mindir_path FILE --input_path DIR --result_path DIR [--device_type Ascend|GPU|CPU] "
    "[--device_id N]\n";

namespace {

bool ParseDeviceId(const std::string &text, uint32_t *value) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos || text.size() > 9) {
    return false;
  }
  *value = static_cast<uint32_t>(std::strtoul(text.c_str(), nullptr, 10));
  return true;
}

}  // namespace

bool ParseOptions(int argc, char **argv, Options *options, bool *help, std::string *error) {
  *help = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      *help = true;
      return true;
    }
    if (arg.rfind("--", 0) != 0) {
      *error = "unexpected argument '" + arg + "'";
      return false;
    }
    std::string key = arg.substr(2);
    std::string value;
    size_t eq = key.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
    }
    if (key != "mindir_path" && key != "input_path" && key != "result_path" && key != "device_type" &&
        key != "device_id") {
      *error = "unknown flag --" + key;
      return false;
    }
    if (!inline_value) {
      if (i + 1 >= argc) {
        *error = "flag --" + key + " needs a value";
        return false;
      }
      value = argv[++i];
    }
    if (key == "mindir_path") {
      options->mindir_path = value;
    } else if (key == "input_path") {
      options->input_path = value;
    } else if (key == "result_path") {
      options->result_path = value;
    } else if (key == "device_type") {
      if (value != "Ascend" && value != "GPU" && value != "CPU") {
        *error = "--device_type must be Ascend, GPU or CPU, got '" + value + "'";
        return false;
      }
      options->device_type = value;
    } else if (key == "device_id") {
      if (!ParseDeviceId(value, &options->device_id)) {
        *error = "--device_id must be a non-negative integer, got '" + value + "'";
        return false;
      }
    }
  }
  for (const auto &required : {std::make_pair("mindir_path", &options->mindir_path),
                               std::make_pair("input_path", &options->input_path),
                               std::make_pair("result_path", &options->result_path)}) {
    if (required.second->empty()) {
      *error = std::string("flag --") + required.first + " is required";
      return false;
    }
  }
  return true;
}

std::string JoinPath(const std::string &dir, const std::string &name) {
  if (dir.empty()) {
    return name;
  }
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

std::string InputDir(const std::string &input_path, size_t index) {
  char folder[16];
  std::snprintf(folder, sizeof(folder), "%02zu_data", index);
  return JoinPath(input_path, folder);
}

bool ListBinFiles(const std::string &dir, std::vector<std::string> *names) {
  DIR *handle = opendir(dir.c_str());
  if (handle == nullptr) {
    return false;
  }
  const std::string suffix = ".bin";
  for (struct dirent *entry = readdir(handle); entry != nullptr; entry = readdir(handle)) {
    std::string name = entry->d_name;
    struct stat info;
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
        stat(JoinPath(dir, name).c_str(), &info) == 0 && S_ISREG(info.st_mode)) {
      names->push_back(name);
    }
  }
  closedir(handle);
  std::sort(names->begin(), names->end());
  return true;
}

std::string ResultName(const std::string &input_name, size_t output_index) {
  std::string stem = input_name.substr(0, input_name.rfind('.'));
  return stem + "_" + std::to_string(output_index) + ".bin";
}

bool MakeDirs(const std::string &dir) {
  struct stat info;
  if (dir.empty()) {
    return false;
  }
  if (stat(dir.c_str(), &info) == 0) {
    return S_ISDIR(info.st_mode);
  }
  const size_t end = dir.find_last_not_of('/');  // "a/b/" -> parent "a"
  const size_t slash = end == std::string::npos ? std::string::npos : dir.find_last_of('/', end);
  if (slash != std::string::npos && slash > 0 && !MakeDirs(dir.substr(0, slash))) {
    return false;
  }
  if (mkdir(dir.c_str(), 0755) == 0) {
    return true;
  }
  return errno == EEXIST && stat(dir.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

long long FileSize(const std::string &path) {
  struct stat info;
  if (stat(path.c_str(), &info) != 0 || !S_ISREG(info.st_mode)) {
    return -1;
  }
  return static_cast<long long>(info.st_size);
}

bool ReadFile(const std::string &path, std::vector<char> *data) {
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  if (!file) {
    return false;
  }
  std::streamsize size = file.tellg();
  if (size < 0) {
    return false;
  }
  data->resize(static_cast<size_t>(size));
  file.seekg(0, std::ios::beg);
  return size == 0 || static_cast<bool>(file.read(data->data(), size));
}

bool WriteFileAtomically(const std::string &path, const void *data, size_t size) {
  const std::string tmp = path + ".tmp-" + std::to_string(getpid());
  std::ofstream file(tmp, std::ios::binary | std::ios::trunc);
  bool ok = file && file.write(static_cast<const char *>(data), static_cast<std::streamsize>(size));
  file.close();
  if (!ok || file.fail()) {
    std::remove(tmp.c_str());
    return false;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return false;
  }
  return true;
}
