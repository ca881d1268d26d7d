"""History: the SQLite store (schema, recording and retention, the summaries plans read), recorder.
May import densityd.model and plan.core's data types; never a source, the server or plan I/O.
"""
