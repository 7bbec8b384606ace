"""A full-fidelity backup of one study: `study_dump` writes it, `study_restore` reads it back.

The file is one canonical JSON document (keys sorted, fixed separators, ASCII, one row per line),
so dumping the same rows twice gives the same bytes, and a study restored into an empty database
dumps again byte for byte. It holds every row hanging off the study (format.PARTS, parents first,
rows by primary key, columns = the model's concrete fields, so fields added later are included),
the survey instruments the answers refer to (by key and version), users by username, and the media
files the rows name: their sha256 and size always, their bytes (base64) with `with_files`. Keyed
hashes of recruitment ids are stored as the database holds them; raw ids are in no table.

Restore checks the whole file before writing, then inserts everything in one transaction. Primary
keys are kept when none of a model's ids is taken in the target; otherwise that model's rows get new
ids and every reference follows (foreign keys, a job's `params["upload"]`, file names built from ids),
so the study is whole but dumps again with the new ids. Users that do not exist become NULL (with a
warning) unless `create_users`, which creates them with no usable password.
"""

from .dump import dump_bytes, study_dump
from .format import FORMAT, PART_LABELS, PARTS, VERSION, BackupError
from .restore import RestoreReport, dump_parse, study_restore

__all__ = [
    "FORMAT",
    "PARTS",
    "PART_LABELS",
    "VERSION",
    "BackupError",
    "RestoreReport",
    "dump_bytes",
    "dump_parse",
    "study_dump",
    "study_restore",
]
