"""One typed record per topic: frozen types, one reader (``decode_*``, which validates and raises
:class:`~streams.core.errors.RecordError` naming the field) and one writer (``to_json``/``encode``)
each. Records are decoded once, at the edge; nothing after the reader re-parses a dict."""
