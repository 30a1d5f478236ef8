"""Reports: topline, banner tables, charts; HTML, XLSX and Markdown (see model.py)."""
