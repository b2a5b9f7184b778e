"""Imports: a file from this site or from another chat app, read as a stream and written in short
transactions by a background job, all or nothing.

    archive.py   opening the upload: JSON or zip (one JSON, or several), the zip guard, images by path or file id
    reader.py    conversations out of the JSON one at a time (ijson)
    formats/     one reader per format, chosen by the shape of each conversation
    tree.py      a conversation's tree from parent links, in one linear pass, in any order
    writer.py    rows written hidden, published in one step or removed; idempotent re-import
    jobs.py      the job: a thread, one per user, CHAT_IMPORT_CONCURRENCY on the site, progress, the sweep
"""

from conversations.services.imports.jobs import check_size, job_status, start_import, sweep

__all__ = ["check_size", "job_status", "start_import", "sweep"]
