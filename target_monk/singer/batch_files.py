"""Records of Singer BATCH messages: read the files a manifest names, in runs of rows.

Knows nothing of Monk. JSONL files are decoded as RECORD lines are (msgspec, floats
as Decimal), gunzipped if their first bytes say gzip; Parquet files need pyarrow
(`target-monk[parquet]`). Files are opened through singer-sdk's `StorageTarget`,
so any storage the SDK's own batch support reads (file://, s3://, ... with the
matching fsspec package) works here too. Memory stays bounded: rows are handed on
in runs, never a whole file at once.
"""

from __future__ import annotations

import gzip
import typing as t
import zlib

import msgspec
from singer_sdk.contrib.msgspec import decoder
from singer_sdk.helpers._batch import BaseBatchFileEncoding, StorageTarget

from target_monk.errors import InputError
from target_monk.singer.reader import line_chunks

_SHOWN_CHARS = 200
_GZIP_MAGIC = b"\x1f\x8b"


def batch_records(
    message: t.Mapping[str, t.Any],
    storage: StorageTarget | None = None,
    run_rows: int = 5000,
) -> t.Iterator[list[dict]]:
    """The records of every file in a BATCH message's manifest, in input order, in runs
    of at most `run_rows` (JSONL: of whatever was read at once).

    `storage` is the target's own `batch_config.storage`, if set (as singer-sdk's
    `Sink.process_batch_files` does); otherwise each file's URL says where it is.

    Raises:
        InputError: naming the file (and line) that cannot be read, or the missing
            extra for Parquet. Raised before any row of a Parquet file is handed on.
    """
    try:
        encoding = BaseBatchFileEncoding.from_dict(dict(message["encoding"]))
        manifest = list(message["manifest"])
    except (KeyError, TypeError, ValueError) as exc:
        msg = f"BATCH message for stream '{message.get('stream')}' is malformed: {exc!r}"
        raise InputError(msg) from None
    read = {"jsonl": _jsonl_records, "parquet": _parquet_records}.get(str(encoding.format))
    if read is None:
        msg = f"BATCH files of format {encoding.format!r} are not supported (jsonl, parquet)"
        raise InputError(msg)
    if read is _parquet_records and not _have_pyarrow():
        msg = (
            "BATCH files are Parquet, which needs pyarrow: install target-monk[parquet] "
            "(e.g. pip_url: target-monk[parquet]) or set the tap's batch_config to jsonl"
        )
        raise InputError(msg)
    for url in manifest:
        head, tail = StorageTarget.split_url(url)
        try:
            with (storage or StorageTarget.from_url(head)).open(tail, mode="rb") as file:
                yield from read(file, url, run_rows)
        except (OSError, EOFError, ValueError, zlib.error) as exc:
            msg = f"BATCH file {url!r} cannot be read: {type(exc).__name__}: {exc}"
            raise InputError(msg) from None


def _have_pyarrow() -> bool:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def _jsonl_records(file: t.IO[bytes], url: str, run_rows: int) -> t.Iterator[list[dict]]:
    # gzip is told by the file's first bytes, whatever the message says: singer-sdk
    # taps (0.53) gzip every JSONL file, also with `compression: none`.
    gzipped = file.read(2) == _GZIP_MAGIC
    file.seek(0)
    source: t.IO[bytes] | gzip.GzipFile = gzip.GzipFile(fileobj=file) if gzipped else file
    number = 0
    for lines in line_chunks(source.read):
        records = []
        for line in lines:
            number += 1
            try:
                record = decoder.decode(line)
            except (msgspec.DecodeError, UnicodeError):
                record = None
            if type(record) is not dict:
                msg = (
                    f"BATCH file {url!r} row {number} is not a JSON object: "
                    f"{bytes(line[:_SHOWN_CHARS])!r}"
                )
                raise InputError(msg)
            records.append(record)
        for start in range(0, len(records), run_rows):
            yield records[start : start + run_rows]


def _parquet_records(file: t.IO[bytes], url: str, run_rows: int) -> t.Iterator[list[dict]]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(file).iter_batches(batch_size=run_rows):
        yield batch.to_pylist()
