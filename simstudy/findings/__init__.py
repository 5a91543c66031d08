"""The findings run: subsets of the shipped studies (:mod:`.subsets`), running them into one
store each (:mod:`.run`), and FINDINGS.md written from the stores (:mod:`.tables` pure tables
and sentences from the summaries, :mod:`.document` the document and its figures).

``analysis/findings.py`` is the command line.
"""
