"""Conformance vectors: what an agency sends, byte for byte, and what the gate answers.

``cases`` says what to send and what the gate must decide (written by hand, from the
rules); ``build`` turns a case into its bytes; ``generate`` runs the real gate and
relay on the embedded broker and writes ``schemas/vectors/*.json`` with every record
they produced; ``check`` compares bytes a third party produced with the vectors.
The file layout is documented in ``schemas/vectors/README.md``.
"""
