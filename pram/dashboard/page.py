"""One self-contained HTML page: headings, notes, tables and plotly figures, with plotly.js inlined once (in
the first figure) so that the page opens with no network."""

from __future__ import annotations

import html

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.note { background: #fff7e0; border-left: 4px solid #e0a800; padding: .5em 1em; margin: 1em 0; }
nav a { margin-right: 1em; }
"""


class Page:
    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []
        self.sections: list[tuple[str, str]] = []
        self.figures = 0

    def section(self, heading: str, anchor: str) -> None:
        self.sections.append((anchor, heading))
        self.parts.append(f'<h2 id="{anchor}">{html.escape(heading)}</h2>')

    def text(self, words: str) -> None:
        self.parts.append(f"<p>{html.escape(words)}</p>")

    def note(self, words: str) -> None:
        """Something the page cannot show, said in place of it."""
        self.parts.append(f'<p class="note">{html.escape(words)}</p>')

    def table(self, header: list[str], rows: list[list]) -> None:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
                       for row in rows)
        self.parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def figure(self, fig) -> None:
        self.parts.append(fig.to_html(full_html=False, include_plotlyjs=self.figures == 0,
                                      div_id=f"figure-{self.figures}",
                                      config={"displaylogo": False, "responsive": True}))
        self.figures += 1

    def html(self) -> str:
        nav = " ".join(f'<a href="#{a}">{html.escape(h)}</a>' for a, h in self.sections)
        return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
                f"<title>{html.escape(self.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
                f"<h1>{html.escape(self.title)}</h1>\n<nav>{nav}</nav>\n" + "\n".join(self.parts)
                + "\n</body>\n</html>\n")


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)
