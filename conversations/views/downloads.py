"""What every file download shares: the Content-Disposition header, and CSV cells a spreadsheet can't run."""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets (tab and carriage
# return too: some strip them and read what follows). OWASP's "CSV injection" advice: prefix a quote.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def attachment(filename: str) -> str:
    """`attachment; filename="ascii"; filename*=UTF-8''percent-encoded` (RFC 6266 with RFC 5987 encoding).

    Django would send a non-ASCII name as an RFC 2047 encoded word, which browsers show literally. Browsers
    use `filename*`; the plain `filename` is an ASCII fallback for clients that don't (accents dropped,
    anything else replaced by "_")."""
    ascii_name = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode("ascii")
    ascii_name = "".join(c if c.isprintable() and c not in '"\\;' else "_" for c in ascii_name)
    if not ascii_name.strip("._-") or ascii_name.startswith("."):
        extension = filename.rsplit(".", 1)[-1] if "." in filename else ""
        ascii_name = f"download.{extension}" if extension.isascii() and extension.isalnum() else "download"
    header = f'attachment; filename="{ascii_name}"'
    if ascii_name != filename:
        header += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return header


def csv_cell(value):
    """A value for a CSV cell: text that a spreadsheet would evaluate gets a leading quote."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
