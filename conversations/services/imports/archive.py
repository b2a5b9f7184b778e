"""Opening an uploaded file: a JSON file, or a zip holding one (at its root or in a folder, as re-zipping an
unpacked export gives) with images beside it. A zip without a conversations JSON but with several JSON files
(per-chat exporters save one file per chat) is read file after file.

The zip guard checks every member's declared sizes before anything is read: the total it would unpack to
(CHAT_IMPORT_MAX_UNCOMPRESSED_BYTES) and each member's compression ratio (CHAT_IMPORT_MAX_RATIO). zipfile
then stops every read at the declared size, so a member that lies about its size can't unpack past it.
Nothing is read whole: the JSON is handed on as a stream and images are copied in chunks.
"""

from __future__ import annotations

import os
import posixpath
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from django.conf import settings

from conversations.services.errors import InvalidInput

# Names of the JSON a zip may hold, most specific first (ours and ChatGPT's, Claude's, Open WebUI's, ...).
JSON_NAMES = ("conversations.json", "chats.json", "chat-export.json")
# What else ChatGPT's and Claude's exports hold beside their conversations: never conversations.
NOT_CONVERSATIONS = (
    "user.json",
    "users.json",
    "projects.json",
    "memories.json",
    "message_feedback.json",
    "model_comparisons.json",
    "shared_conversations.json",
)
FILE_ID = re.compile(r"(file[-_][A-Za-z0-9]+)")
SMALL_MEMBER = 1024 * 1024  # below this, a high ratio (a file of spaces) can't hurt anyone
MAX_MEMBERS = 200_000


def refuse(message: str):
    raise InvalidInput(f"This file can't be imported: {message} Nothing was imported.", code="bad_import")


@dataclass
class Source:
    """The JSON to parse, and the files a zip holds beside it (by path, and ChatGPT's by file id)."""

    json: BinaryIO
    archive: zipfile.ZipFile | None = None
    folder: str = ""  # where the JSON sits in the zip; our images/ paths are relative to it
    json_size: int = 0  # bytes of JSON to read: progress is how far the streams have got
    json_name: str = ""  # the member's name in the zip
    more: list[str] = field(default_factory=list)  # further JSON members, read after `json`
    json_sizes: list[int] = field(default_factory=list)  # each member's size, for progress
    _handles: list = field(default_factory=list)
    _done: int = 0  # bytes of the JSON members already read

    def documents(self) -> Iterator[tuple[str, BinaryIO]]:
        """(name, stream) of each JSON document in turn: `json`, then the further members, each opened when
        its turn comes and closed when the next one opens."""
        yield self.json_name, self.json
        for name in self.more:
            assert self.archive is not None
            self._done += self.json_sizes.pop(0) if self.json_sizes else 0
            previous, self.json = self.json, self.archive.open(name)
            self._handles[self._handles.index(previous)] = self.json
            previous.close()
            self.folder = posixpath.dirname(name)
            yield name, self.json

    def position(self) -> int:
        """Bytes of JSON read so far, for the progress bar."""
        try:
            return self._done + self.json.tell()
        except (OSError, ValueError):
            return self._done

    def member(self, path: str) -> str | None:
        """A member by its path relative to the JSON's folder (ours: images/<id>.png)."""
        if self.archive is None or not path:
            return None
        name = posixpath.normpath(posixpath.join(self.folder, path))
        return name if name in self.by_path else None

    def find_file_id(self, file_id: str) -> str | None:
        """ChatGPT's exports name a user's image after its file id: file-AbC123-photo.jpg (or file_00...)."""
        return self._by_file_id.get(file_id) if file_id else None

    def open_member(self, name: str) -> BinaryIO:
        assert self.archive is not None
        return self.archive.open(name)

    def close(self) -> None:
        for handle in self._handles:
            handle.close()

    def __post_init__(self) -> None:
        self.by_path: set[str] = set()
        self._by_file_id: dict[str, str] = {}
        if self.archive is not None:
            for name in self.archive.namelist():
                if name.endswith("/"):
                    continue
                self.by_path.add(name)
                match = FILE_ID.match(posixpath.basename(name))
                if match:
                    self._by_file_id.setdefault(match.group(1), name)


def check_members(infos: list[zipfile.ZipInfo]) -> None:
    """The zip guard: declared sizes, before anything is decompressed."""
    if len(infos) > MAX_MEMBERS:
        refuse(f"the zip holds more than {MAX_MEMBERS:,} files.")
    total = 0
    for info in infos:
        total += info.file_size
        if info.flag_bits & 0x1:
            refuse("the zip is encrypted.")
        if info.file_size > SMALL_MEMBER and info.file_size > settings.CHAT_IMPORT_MAX_RATIO * max(
            info.compress_size, 1
        ):
            refuse(
                f"{posixpath.basename(info.filename)} in the zip is compressed more than "
                f"{settings.CHAT_IMPORT_MAX_RATIO} times, which is how zip bombs look."
            )
    if total > settings.CHAT_IMPORT_MAX_UNCOMPRESSED_BYTES:
        limit = settings.CHAT_IMPORT_MAX_UNCOMPRESSED_BYTES / 1024**3
        refuse(f"the zip would unpack to more than {limit:g} GB.")


def _json_members(names: list[str]) -> list[str]:
    """The shallowest conversations JSON (a folder is fine); failing that, every other JSON file, by name."""
    candidates = [n for n in names if posixpath.basename(n) in JSON_NAMES and "__MACOSX" not in n]
    if candidates:
        return [min(candidates, key=lambda n: (n.count("/"), JSON_NAMES.index(posixpath.basename(n))))]
    return sorted(
        n
        for n in names
        if n.lower().endswith(".json")
        and "__MACOSX" not in n
        and posixpath.basename(n).lower() not in NOT_CONVERSATIONS
        and not posixpath.basename(n).startswith(".")
    )


def open_source(path: str) -> Source:
    handle = open(path, "rb")  # noqa: SIM115 (closed by Source.close)
    head = handle.read(4)
    handle.seek(0)
    if head != b"PK\x03\x04":
        return Source(json=handle, json_size=os.path.getsize(path), _handles=[handle])
    try:
        archive = zipfile.ZipFile(handle)
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        handle.close()
        refuse("it is not a readable zip file.")
    try:
        check_members(infos)
        names = _json_members([i.filename for i in infos if not i.is_dir()])
        if not names:
            refuse("the zip holds no conversations.json.")
        name = names[0]
        stream = archive.open(name)
    except (zipfile.BadZipFile, NotImplementedError, OSError):
        archive.close()
        handle.close()
        refuse("it is not a readable zip file.")
    except InvalidInput:
        archive.close()
        handle.close()
        raise
    size = sum(archive.getinfo(n).file_size for n in names)
    return Source(
        json=stream,
        archive=archive,
        folder=posixpath.dirname(name),
        json_name=name,
        json_size=size,
        more=names[1:],
        json_sizes=[archive.getinfo(n).file_size for n in names],
        _handles=[stream, archive, handle],
    )
