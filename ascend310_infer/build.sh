#!/bin/bash
# Build ascend310_infer/out/main against MindSpore Lite.
#   MS_LITE_HOME=/path/to/mindspore-lite-VERSION-linux-ARCH bash ascend310_infer/build.sh
set -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")" || exit 2
if [ -z "$MS_LITE_HOME" ]; then
    echo "error: MS_LITE_HOME is not set: point it at an unpacked MindSpore Lite package" >&2
    exit 2
fi
if [ ! -f "$MS_LITE_HOME/runtime/include/api/model.h" ]; then
    echo "error: MS_LITE_HOME=$MS_LITE_HOME is not a MindSpore Lite package (no runtime/include/api/model.h)" >&2
    exit 2
fi
for tool in cmake make; do
    command -v "$tool" >/dev/null || { echo "error: $tool is not installed" >&2; exit 2; }
done
mkdir -p out && cd out || exit 2
cmake .. -DMS_LITE_HOME="$MS_LITE_HOME" || { echo "error: cmake failed" >&2; exit 1; }
make -j"$(nproc 2>/dev/null || echo 2)" || { echo "error: make failed (see the compiler messages above)" >&2; exit 1; }
echo "built $(pwd)/main"
