"""Madoguchi: ward-office counters, remote consultation and a live ticket queue.

The repository root *is* this package (setuptools maps it with
``package-dir = {"madoguchi" = "."}``). Its four feature folders, ``consult/``,
``queue/``, ``web/`` and ``kiosk/``, are namespace subpackages on purpose: they
have no ``__init__.py``, so when the repository root lands on ``sys.path``
(``python -m pytest``, ``uvicorn --reload``) the folder ``queue/`` can never
shadow the standard library's ``queue`` module, which redis-py imports. Import
them as ``madoguchi.queue.tickets`` or relatively, never as top-level ``queue``.
Package data (templates, Lua scripts) is found by path from ``__file__``.
"""

__version__ = "0.1.0"
