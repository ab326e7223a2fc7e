"""A Kardia recording as a PDF on standard ECG paper, drawn with reportlab.

A4 landscape; 10 s of lead I per row, three rows a page; a 1 mm grid with bold lines every
5 mm; 25 mm/s and 10 mm/mV, the samples scaled through `amplitudeResolution`; a 1 mV
calibration pulse at the start of each row; the header names the patient, the recording time,
the heart rate and the determination.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from reportlab.lib.colors import Color
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas

from gateway.vendors import kardia

MM_PER_S = 25.0
MM_PER_MV = 10.0
ROW_SECONDS = 10.0
ROW_HEIGHT_MM = 40.0  # +-2 mV
ROWS_PER_PAGE = 3
LEFT_MM, TOP_MM = 20.0, 34.0
CAL_MM = 10.0  # room for the calibration pulse left of each strip
FINE = Color(0.97, 0.72, 0.72)
BOLD = Color(0.90, 0.38, 0.38)


def _grid(c: Canvas, x0: float, y0: float, width: float, height: float) -> None:
    for i in range(int(round(width)) + 1):
        c.setStrokeColor(BOLD if i % 5 == 0 else FINE)
        c.setLineWidth(0.6 if i % 5 == 0 else 0.2)
        c.line((x0 + i) * mm, y0 * mm, (x0 + i) * mm, (y0 + height) * mm)
    for j in range(int(round(height)) + 1):
        c.setStrokeColor(BOLD if j % 5 == 0 else FINE)
        c.setLineWidth(0.6 if j % 5 == 0 else 0.2)
        c.line(x0 * mm, (y0 + j) * mm, (x0 + width) * mm, (y0 + j) * mm)


def _header(c: Canvas, page_h: float, recording: dict[str, Any], patient: dict[str, Any] | None,
            signal_name: str, page: int, pages: int) -> None:
    name = " ".join(p for p in ((patient or {}).get("firstname"), (patient or {}).get("lastname")) if p) or "Patient"
    ident = f"MRN {patient['mrn']}, born {patient['dob']}" if patient else recording[kardia.PATIENT_ID]
    hr = recording.get(kardia.HEART_RATE)
    raw = recording[kardia.DATA][kardia.RAW]
    c.setFillColorRGB(0, 0, 0)
    c.setFont("Helvetica-Bold", 13)
    c.drawString(LEFT_MM * mm, page_h - 14 * mm, f"Kardia ECG - {name} ({ident})")
    c.setFont("Helvetica", 9.5)
    c.drawString(LEFT_MM * mm, page_h - 20 * mm,
                 f"Recorded {recording[kardia.RECORDED_AT]}   Duration {recording[kardia.DURATION] / 1000:.1f} s   "
                 f"Heart rate {hr if hr is not None else '--'} bpm   "
                 f"Determination: {recording[kardia.DETERMINATION]}")
    c.drawString(LEFT_MM * mm, page_h - 25 * mm,
                 f"Lead I ({signal_name})   {MM_PER_S:g} mm/s   {MM_PER_MV:g} mm/mV   {raw[kardia.FREQUENCY]} Hz   "
                 f"mains {raw[kardia.MAINS_FREQUENCY]} Hz   {raw[kardia.AMPLITUDE_RESOLUTION]} nV/unit   "
                 f"Recording {recording['id']}   page {page}/{pages}")


def render(recording: dict[str, Any], patient: dict[str, Any] | None, use: str = "enhanced") -> bytes:
    """The PDF bytes of a recording object (as the API returns it); `use` picks raw or enhanced."""
    data = recording[kardia.DATA]
    signal_name = use if data.get(use) else kardia.RAW
    obj = data[signal_name]
    fs = obj[kardia.FREQUENCY]
    mv = np.asarray(obj[kardia.SAMPLES][kardia.LEAD_I], dtype=float) * obj[kardia.AMPLITUDE_RESOLUTION] / 1e6
    per_row = int(ROW_SECONDS * fs)
    rows = max(1, -(-len(mv) // per_row))
    pages = -(-rows // ROWS_PER_PAGE)
    page_w, page_h = landscape(A4)
    strip_w = ROW_SECONDS * MM_PER_S
    buf = io.BytesIO()
    c = Canvas(buf, pagesize=landscape(A4))
    c.setTitle(f"Kardia ECG {recording['id']}")
    c.setAuthor("wearable-gateway Kardia Pro emulator")
    for row in range(rows):
        page, slot = divmod(row, ROWS_PER_PAGE)
        if slot == 0:
            if row:
                c.showPage()
            _header(c, page_h, recording, patient, signal_name, page + 1, pages)
        top = page_h / mm - TOP_MM - slot * (ROW_HEIGHT_MM + 8)
        y0 = top - ROW_HEIGHT_MM
        baseline = y0 + ROW_HEIGHT_MM / 2
        x0 = LEFT_MM + CAL_MM
        _grid(c, LEFT_MM, y0, CAL_MM + strip_w, ROW_HEIGHT_MM)
        c.setStrokeColorRGB(0, 0, 0)
        c.setLineWidth(0.9)
        # Calibration pulse: 1 mV for 0.2 s.
        cal = c.beginPath()
        cal.moveTo((LEFT_MM + 2) * mm, baseline * mm)
        for dx, dy in ((1, 0), (1, MM_PER_MV), (1 + 0.2 * MM_PER_S, MM_PER_MV), (1 + 0.2 * MM_PER_S, 0),
                       (CAL_MM - 2, 0)):
            cal.lineTo((LEFT_MM + 2 + dx) * mm, (baseline + dy) * mm)
        c.drawPath(cal, stroke=1, fill=0)
        seg = mv[row * per_row:(row + 1) * per_row]
        if len(seg):
            xs = (x0 + np.arange(len(seg)) / fs * MM_PER_S) * mm
            ys = (baseline + np.clip(seg - np.median(seg), -2.0, 2.0) * MM_PER_MV) * mm
            path = c.beginPath()
            path.moveTo(xs[0], ys[0])
            # reportlab's path API takes one point a call; this runs per PDF request, not per packet.
            for x, y in zip(xs[1:].tolist(), ys[1:].tolist()):
                path.lineTo(x, y)
            c.drawPath(path, stroke=1, fill=0)
        c.setFont("Helvetica", 7)
        c.setFillColorRGB(0.25, 0.25, 0.25)
        for s in range(int(ROW_SECONDS) + 1):
            c.drawCentredString((x0 + s * MM_PER_S) * mm, (y0 - 3.5) * mm, f"{row * ROW_SECONDS + s:g} s")
    c.showPage()
    c.save()
    return buf.getvalue()
