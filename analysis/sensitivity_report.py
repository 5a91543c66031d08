"""Sensitivity report of a results store: a thin wrapper of :mod:`simstudy.evaluate.report`.

    python analysis/sensitivity_report.py STORE --out report/   (same as: simstudy report STORE --out report/)
"""

import sys

from simstudy.evaluate.report import main

if __name__ == "__main__":
    sys.exit(main())
