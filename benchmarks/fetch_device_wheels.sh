#!/usr/bin/env bash
# Download into .whl/ the wheels that the GPU machine's image lacks, for benchmarks/device_check.sh.
#
# Run HERE (a machine with network access to the package index), from anywhere inside the
# repository:
#
#     bash benchmarks/fetch_device_wheels.sh
#
# The GPU machine ("nvidia-h200", /work/.library/device/KINDS.md) runs Python 3.12.3 on
# x86-64 with torch, xarray, numpy, scipy, pandas, pytest, hypothesis, matplotlib,
# scikit-image, click, cloudpickle, fsspec, toolz, pyyaml, jinja2, msgpack, psutil,
# sortedcontainers, requests, certifi, packaging, typing-extensions, tqdm, rich ... but none of
# the packages below, and it cannot reach any package index.  The wheels travel with the
# working tree (`carry: [".whl"]`; 64 MiB in all, tree included) and device_check.sh installs
# them with `pip install --no-index --no-deps --target /tmp/site`.
#
# The versions are those of the development virtualenv this was written with (Python 3.11),
# all of which publish wheels for CPython 3.12 on manylinux x86-64.  Each needed package is
# named (pip download --no-deps fetches nothing by itself), and one version of each only.
#
# Left out on purpose (their tests skip without them, and none of them touches the GPU):
#   compliance-checker (+ cf-units, pyproj, shapely, pendulum, owslib, ...: ~40 MiB; the CF
#   compliance tests run on CPU CI), ruff, mypy (static checks, CPU CI).
set -euo pipefail

root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
cd "$root"
dest=.whl
limit_mib=${XSR_WHEEL_LIMIT_MIB:-48} # leaves room for the working tree (~3 MiB) under 64 MiB

# xsr's runtime dependencies the image lacks, with their own missing dependencies
runtime=(
  dask==2026.8.0 partd==1.4.2 locket==1.0.0 # dask[array]
  cf-xarray==0.11.3
  pooch==1.9.0 platformdirs==4.14.9
  netCDF4==1.7.5.1.post1 cftime==1.6.6.1
)
# extras used by the test suite and by the benchmarks: distributed, zarr, scoringrules,
# import-linter (tests/test_architecture.py)
extras=(
  distributed==2026.8.0 tblib==3.2.2 tornado==6.6.1 zict==3.0.0
  zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0
  scoringrules==0.10.0
  import-linter==2.17 grimp==3.20
)

git check-ignore -q "$dest/x.whl" || {
  echo "error: $dest/ is not ignored by git; add '/$dest/' to .gitignore" >&2
  exit 1
}
mkdir -p "$dest"

platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 \
  manylinux2014_x86_64 manylinux1_x86_64 manylinux_2_24_x86_64 manylinux_2_31_x86_64 \
  manylinux_2_34_x86_64 manylinux_2_35_x86_64; do
  platforms+=(--platform "$p")
done

python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${platforms[@]}" -d "$dest" "${runtime[@]}" "${extras[@]}" \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

# exactly one wheel per project (two versions of one stop the whole install there)
dups=$(ls "$dest"/*.whl | xargs -n1 basename | cut -d- -f1 | tr 'A-Z-' 'a-z_' | sort | uniq -d)
if [ -n "$dups" ]; then
  echo "error: more than one wheel in $dest for: $dups (remove the stale ones)" >&2
  exit 1
fi

ls -l "$dest"/*.whl
total=$(du -cb "$dest"/*.whl | tail -1 | cut -f1)
mib=$((total / 1048576))
echo "$(ls "$dest"/*.whl | wc -l) wheels, ${mib} MiB in $dest (limit ${limit_mib} MiB)"
if [ "$mib" -gt "$limit_mib" ]; then
  echo "error: the wheels are over ${limit_mib} MiB; the working tree must stay under 64 MiB" >&2
  exit 1
fi
