"""How compiled calls run: fastnn's thread count and pool (``threads``), the
floating-point mode inside them (``fpmode``), and the one door every compiled call goes
through, which applies both (``boundary``).  Public as ``fastnn.threads`` and
``fastnn.fpmode``.
"""
