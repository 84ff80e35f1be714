"""Researcher exports of a study: judgments, preference pairs, rankings and skips.

Every export is a *record kind* written by a *writer*, and the registry names
the pairs a researcher can download:

``schema.py``
    One column schema per record kind; the CSV header, the JSON-lines keys and
    the Arrow schema of parquet and Hugging Face exports all come from it.
``rows.py``
    The study's judgments and skips read chunk by chunk with their texts (three
    queries per chunk, memory flat in study size), and annotator pseudonyms.
``kinds/``
    One module per record kind (``judgments``, ``dpo``, ``rankings``, ``skips``):
    its schema, what one record holds, and why.
``writers.py``
    JSON lines, CSV, streamed parquet and the zipped ``datasets`` folder.
``archives.py``
    Zip streams and the reward-model checkpoint archive.
``registry.py``
    The downloads: record kind × writer, which gives the key in the URL
    (``judgments.jsonl``), the file name and the label on the study page.

Adding an export kind is one module under ``kinds/`` (a schema and a records
function, bundled as ``KIND``) plus one line in ``registry.py`` per file format.
A kind may come in several forms (DPO pairs: TRL's conversational message lists,
or text that keeps the ``\n\nAssistant:`` cue), a ``schema.Forms`` the
researcher picks from with ``?form=``; the file says which (a ``form`` column,
the parquet metadata, the dataset card of a ``datasets`` folder).
"""
