#!/bin/sh
# if_shared.sh DIR CMD...: runs CMD when DIR (under ../shared) exists; otherwise
# prints why and exits 77, which ctest reports as skipped.
dir=$1
shift
if [ ! -d "$dir" ]; then
  echo "SKIP: $dir is absent (tests read ../shared beside the repository root)"
  exit 77
fi
exec "$@"
