"""How compiled calls run: fastnn's thread count and pool (``threads``) and the
floating-point mode inside them (``fpmode``).  Public as ``fastnn.threads`` and
``fastnn.fpmode``.
"""
