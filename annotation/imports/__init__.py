"""Importing prompts and candidate responses into a study, from files in several formats.

Read it by name:

- ``records``: what every format produces (``PromptRecord``, ``CandidateRecord``),
  ``ImportResult``, ``ImportFileError`` (with the line or row and field at
  fault) and the content hashes that make an import idempotent;
- ``storable``: what a database can store (no NUL or lone surrogate in text,
  no NaN or Infinity, bounded nesting), checked on every line or row, and
  ``printable`` for messages that quote a hostile file;
- one module per format: ``jsonl``, ``hh_rlhf``, ``csv``, and ``tables``
  (Parquet, Hugging Face ``save_to_disk`` datasets); ``columns`` holds the
  table columns CSV and the binary tables share;
- ``registry``: the catalogue of formats (key, label, detection from the file
  name and first bytes, parsing, options, whether it may run during the
  request); adding a format is one module plus one entry there;
- ``writer``: ``study_import_records``, all or nothing, with gold comparisons;
- ``jobs``: imports run by the worker (``ImportJob``), with progress;
- ``upload``: the service the pages and the API call for an upload, which
  imports it now or makes it a job.

The parsing side (``records``, the formats, ``registry``) does not import
``annotation.models``, which reads ``ImportJob.format``'s choices from the
registry; ``writer``, ``jobs`` and ``upload`` sit above the models.
"""
