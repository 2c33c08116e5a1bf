/**
 * mindspore::Converter (ONNX/TF/... -> MINDIR) as libmindspore_converter.so of MindSpore Lite 2.0
 * exports it. The Lite packages ship no header for it, so this declares exactly the exported
 * members convert.cc calls (checked with `nm -DC libmindspore_converter.so`): strings cross the
 * library boundary as std::vector<char> (the dual-ABI convention of include/api), the class holds
 * one std::shared_ptr to its parameters. Only the declarations live here; the code is the library's.
 */
#ifndef CPC_ASCEND310_INFER_INC_LITE_CONVERTER_H_
#define CPC_ASCEND310_INFER_INC_LITE_CONVERTER_H_

#include <memory>
#include <vector>

#include "include/api/status.h"
#include "include/api/types.h"
#include "include/registry/converter_context.h"

namespace mindspore {

struct ConverterPara;

class MS_API Converter {
 public:
  Converter(converter::FmkType fmk_type, const std::vector<char> &model_file, const std::vector<char> &output_file,
            const std::vector<char> &weight_file);
  void SetSaveType(ModelType save_type);
  void SetNoFusion(bool no_fusion);
  Status Convert();

 private:
  std::shared_ptr<ConverterPara> data_;
};

}  // namespace mindspore

#endif  // CPC_ASCEND310_INFER_INC_LITE_CONVERTER_H_
