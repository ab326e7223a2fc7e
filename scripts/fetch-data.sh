#!/usr/bin/env bash
# Download the public recordings the analysis and replay tests read, from PhysioNet, into
# ../shared/data (or DIR): the same records, unchanged, laid out as tests/conftest.py expects.
#   scripts/fetch-data.sh [DIR]
# Needs internet and wfdb (pip install wfdb, or the project's [test] extra). About 60 MB.
# Licence of the data: Open Data Commons Attribution v1.0; cite the databases (docs/testing.md lists them).
# Untested from this project's machines (they reach only package registries): report what fails.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-../shared/data}"
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || python=python3
mkdir -p "$dest"
"$python" - "$dest" <<'PY'
import csv, io, sys, urllib.request
from pathlib import Path

import wfdb

dest = Path(sys.argv[1])
MITDB = "101 102 104 106 107 108 109 112 114 115 116 118 119 122 124 201 203 205 207 208 209 215 217 220 223 230".split()
NSTDB = ["bw", "ma", "118e24"]
CINC = """
    A00001 A00003 A00004 A00007 A00008 A00009 A00011 A00014 A00017 A00018 A00021 A00022 A00023
    A00026 A00027 A00029 A00031 A00033 A00036 A00038 A00039 A00042 A00043 A00045 A00048 A00050
    A00052 A00055 A00056 A00057 A00060 A00061 A00063 A00066 A00067 A00069 A00072 A00074 A00076
    A00077 A00080 A00082 A00084 A00086 A00087 A00088 A00091 A00094 A00096 A00097 A00099 A00101
    A00103 A00105 A00107 A00110 A00111 A00113 A00115 A00117 A00120 A00122 A00123 A00125 A00127
    A00130 A00131 A00132 A00135 A00136 A00141 A00142 A00144 A00145 A00147 A00149 A00151 A00153
    A00157 A00158 A00161 A00163 A00164 A00166 A00168 A00170 A00171 A00173 A00175 A00178 A00180
    A00181 A00183 A00185 A00187 A00190 A00192 A00194 A00195 A00199 A00201 A00202 A00203 A00207
    A00208 A00209 A00212 A00214 A00215 A00217 A00220 A00221 A00223 A00226 A00228 A00230 A00231
    A00233 A00235 A00237 A00239 A00241 A00244 A00248 A00253 A00271 A00321 A00395 A00405 A00432
    A00439 A00456 A00473 A00509 A00520 A00524 A00551 A01006 A01246 A01521 A01707 A01772 A02168
    A02772 A02833 A03738 A04137 A04186 A04282 A04522 A04735
""".split()

wfdb.dl_database("mitdb", str(dest / "mitdb"), records=MITDB, annotators=["atr"])
wfdb.dl_database("nstdb", str(dest / "nstdb"), records=["bw", "ma"], annotators=None)  # noise only
wfdb.dl_database("nstdb", str(dest / "nstdb"), records=["118e24"], annotators=["atr"])
# CinC 2017: the training set, in folders of 1,000 records (A00/, A01/, ...), and its labels.
base = "https://physionet.org/files/challenge-2017/1.0.0/training"
out = dest / "cinc2017"
out.mkdir(parents=True, exist_ok=True)
for rec in CINC:
    for ext in (".hea", ".mat"):
        target = out / (rec + ext)
        if not target.exists():
            urllib.request.urlretrieve(f"{base}/{rec[:3]}/{rec}{ext}", target)
labels = urllib.request.urlopen(f"{base}/REFERENCE.csv").read().decode()
wanted = set(CINC)
rows = [r for r in csv.reader(io.StringIO(labels)) if r and r[0] in wanted]
(out / "REFERENCE.csv").write_text("".join(f"{r[0]},{r[1]}\n" for r in rows))
print(f"{len(MITDB)} MIT-BIH, {len(NSTDB)} noise stress and {len(rows)} CinC 2017 records in {dest}")
PY
