"""Write docs/settings.md from Config's declarations: python -m asynccluster.docs > docs/settings.md"""

from asynccluster.config import format_settings_table

HEADER = "# Settings\n\nGenerated from `asynccluster/config.py` by `python -m asynccluster.docs > docs/settings.md`.\n"


def settings_markdown() -> str:
    return HEADER + "\n" + format_settings_table()


if __name__ == "__main__":
    print(settings_markdown(), end="")
