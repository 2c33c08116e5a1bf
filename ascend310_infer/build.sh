#!/bin/bash
# Build ascend310_infer/out/main (and ascend310_infer/out/convert where the Lite converter library is there).
#   MS_LITE_HOME=/path/to/mindspore-lite-VERSION-linux-ARCH bash ascend310_infer/build.sh
#   MS_LITE_HOME=$(bash scripts/fetch_lite.sh) bash ascend310_infer/build.sh     (Lite 2.0 CPU wheel)
# MS_LITE_HOME: an unpacked MindSpore Lite package (runtime/include, runtime/lib) or the unpacked
# mindspore-lite wheel (mindspore_lite/include, mindspore_lite/lib); see CMakeLists.txt.
set -o pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
cd "$(dirname "${BASH_SOURCE[0]}")" || exit 2
check_lite_home "(or run: export MS_LITE_HOME=\$(bash scripts/fetch_lite.sh))"
# a build folder configured for another MS_LITE_HOME is started afresh
if [ -f out/CMakeCache.txt ] && ! grep -qx "MS_LITE_HOME:UNINITIALIZED=$MS_LITE_HOME" out/CMakeCache.txt; then
    rm -rf out
fi
mkdir -p out && cd out || exit 2
cmake .. -DMS_LITE_HOME="$MS_LITE_HOME" >cmake.log 2>&1 || { cat cmake.log >&2; echo "error: cmake failed" >&2; exit 1; }
make -j"$(nproc 2>/dev/null || echo 2)" || { echo "error: make failed (see the compiler messages above)" >&2; exit 1; }
echo "built $(pwd)/main"
