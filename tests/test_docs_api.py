"""The API reference covers the public API: every name of ``fastnn.__all__`` is listed in
docs/api/index.rst (under the spelling users import it by) and every public module of the
package in docs/api/modules.rst, so a new export or module cannot go undocumented."""
import importlib
import pathlib
import pkgutil
import re

import pytest

import fastnn

API = pathlib.Path(__file__).resolve().parents[1] / "docs" / "api"
pytestmark = pytest.mark.skipif(not API.is_dir(), reason="the documentation is not beside "
                                "the tests (an installed package without its sources)")


def _listed(page):
    """Every dotted fastnn name written in the page (autosummary entries, table cells)."""
    return set(re.findall(r"\bfastnn(?:\.[A-Za-z_]\w*)*", (API / page).read_text("utf-8")))


def _public_modules():
    """fastnn's modules whose dotted name has no part starting with an underscore."""
    return sorted(m.name for m in pkgutil.walk_packages(fastnn.__path__, "fastnn.")
                  if not any(part.startswith("_") for part in m.name.split(".")))


#: modules that are machinery of others, documented through what they serve
INTERNAL = {"fastnn.runtime.boundary", "fastnn.runtime.state"}


@pytest.mark.parametrize("name", fastnn.__all__)
def test_every_exported_name_is_in_the_api_reference(name):
    assert f"fastnn.{name}" in _listed("index.rst"), \
        f"fastnn.{name} is in fastnn.__all__ but not in docs/api/index.rst"


def test_every_public_module_has_a_page():
    missing = set(_public_modules()) - INTERNAL - _listed("modules.rst")
    assert not missing, f"modules without a page in docs/api/modules.rst: {sorted(missing)}"


def test_the_modules_page_names_only_modules_that_exist():
    for name in _listed("modules.rst") - {"fastnn"}:
        importlib.import_module(name)


def test_internal_modules_exist():
    # a renamed machinery module must leave this list, or it would exempt nothing
    assert INTERNAL <= set(_public_modules())
