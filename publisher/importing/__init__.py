"""Importing subscriber lists: decoding, CSV records, export formats, row checks, the report, batches.

Nothing is lost or swallowed: every data row of a file is either imported or reported with its line
number and the reason.
"""

from publisher.importing.errors import ImportFileError

__all__ = ["ImportFileError"]
