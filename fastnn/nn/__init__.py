"""The network: dense layers and activations (``layers``), the ``MLP`` (``model``),
initializers (``init``), the maximum-likelihood losses (``losses``), sparse input
(``sparse``) and the gradient check (``gradcheck``).  Public as ``fastnn.layers``,
``fastnn.model``, ``fastnn.init``, ``fastnn.losses``, ``fastnn.sparse``, ``fastnn.gradcheck``.
"""
