"""The S3 side of scripts/bench/run.sh --output s3://…: check the bucket, count a dataset's rows
and remove a run's data, through the S3 API (pyarrow's S3FileSystem; no local copy).

Usage (with the python of run.sh's PYTHON, which has pyarrow):
  s3_data.py check URL          exit 0 if URL's bucket answers a listing, else say why (exit 1)
  s3_data.py warmup URL         put, read and delete a few objects below URL/_warmup/ and print the
                                seconds it took: a fresh SeaweedFS allocates its volumes on the
                                bucket's first writes (seconds), which no measured run should pay
  s3_data.py rows URL GLOB      the number of rows in the Parquet objects below URL whose key,
                                relative to URL, matches GLOB (fnmatch, e.g. 'run_*/id=*/*.parquet'),
                                read with hive partitioning: the DuckDB count of the local runs
  s3_data.py rm URL             delete every object below URL (a run's data, after its check)

URL is s3://bucket/prefix (or s3a://). Credentials and the endpoint come from the standard
variables: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL (http:// or
https://; unset: AWS itself).
"""

import fnmatch
import os
import sys
import time
from urllib.parse import urlparse

import pyarrow.dataset as ds
import pyarrow.fs as pafs


def filesystem():
    kw = {
        "access_key": os.environ.get("AWS_ACCESS_KEY_ID"),
        "secret_key": os.environ.get("AWS_SECRET_ACCESS_KEY"),
        "region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    }
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        u = urlparse(endpoint)
        kw["endpoint_override"] = u.netloc
        kw["scheme"] = u.scheme or "https"
    return pafs.S3FileSystem(**{k: v for k, v in kw.items() if v is not None})


def base_of(url):
    """s3://bucket/prefix -> bucket/prefix (pyarrow's path form)."""
    u = urlparse(url)
    if u.scheme not in ("s3", "s3a") or not u.netloc:
        raise SystemExit(f"not an s3:// URL: {url}")
    return f"{u.netloc}/{u.path.strip('/')}".rstrip("/")


def main(argv):
    if len(argv) < 3 or argv[1] not in ("check", "warmup", "rows", "rm"):
        print(__doc__, file=sys.stderr)
        return 64
    cmd, base = argv[1], base_of(argv[2])
    fs = filesystem()
    if cmd == "check":
        bucket = base.split("/", 1)[0]
        try:
            fs.get_file_info(pafs.FileSelector(bucket, recursive=False, allow_not_found=False))
        except OSError as e:
            print(f"bucket {bucket} at {os.environ.get('AWS_ENDPOINT_URL', 'AWS')}: {e}", file=sys.stderr)
            return 1
        return 0
    if cmd == "warmup":
        t0 = time.time()
        for i in range(8):
            with fs.open_output_stream(f"{base}/_warmup/{i}") as f:
                f.write(os.urandom(256 * 1024))
            with fs.open_input_stream(f"{base}/_warmup/{i}") as f:
                f.read()
        fs.delete_dir(f"{base}/_warmup")
        print(f"{time.time() - t0:.2f}")
        return 0
    if cmd == "rm":
        try:
            fs.delete_dir(base)
        except FileNotFoundError:
            pass  # nothing there (a failed run wrote nothing)
        return 0
    glob = argv[3]
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    files = sorted(
        i.path for i in infos if i.type == pafs.FileType.File and fnmatch.fnmatchcase(i.path[len(base) + 1 :], glob)
    )
    if not files:
        print("?")
        return 0
    data = ds.dataset(files, filesystem=fs, format="parquet", partitioning="hive", partition_base_dir=base)
    print(data.count_rows())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
