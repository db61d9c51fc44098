"""MoCap readers: every supported file becomes a :class:`stmt.sequence.MeshSequence`.

Public entry point: :func:`read_sequence` (format detected from extension and
content). Filled in by the readers work (issue 2).
"""
