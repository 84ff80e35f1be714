"""Record kinds: what one export holds, one module each.

A module defines its ``SCHEMA`` (the columns, in order, with their types), a
``records`` function yielding its records a chunk at a time (read through
``annotation.exports.rows``), and ``KIND``, the :class:`RecordKind` that the
registry pairs with writers. ``shared.py`` holds the columns several kinds have
in common (the prompt, how the comparison was chosen, the candidates).
"""
