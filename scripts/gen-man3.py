#!/usr/bin/env python3
"""gen-man3.py [--version V] [--date YYYY-MM-DD] [--index FILE] HEADER OUTDIR

Writes the section 3 manual pages from the header's doc comments, the only copy of that text:
  - a page per function (NAME.3): synopsis, the doc comment, return value, see also;
  - a page per struct/enum typedef (junos_sync_state_t.3, ...) with each field or value;
    a struct whose fields are callback typedefs documents those there, and each callback
    typedef's name becomes a link to that page (junos_sync_ack_notify_func_t.3 ->
    junos_sync_callbacks_t.3); a callback no struct holds gets a page of its own;
  - #define constants in a CONSTANTS section of every page whose text names them;
  - with --index, the list of those pages for junos-sync(7), in scdoc.
A function added to the header gets its page with no change here.
"""
import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import header_api  # noqa: E402

HEADER_INCLUDE = "jnx/junos_sync.h"


def esc(text):
    """Escapes plain text for roff."""
    return text.replace("\\", "\\e")


def inline(text):
    """Doc text to roff: `code` in bold (its hyphens as minus signs)."""
    out = []
    for i, part in enumerate(text.split("`")):
        part = esc(part)
        out.append(f"\\fB{part.replace('-', chr(92) + '-')}\\fR" if i % 2 else part)
    return "".join(out)


def line(text):
    """A text line that roff must not read as a request."""
    return "\\&" + text if text[:1] in (".", "'") else text


def paragraphs(doc):
    """Doc lines -> [("p", text) | ("h", heading) | ("li", text)]."""
    blocks, cur, kind = [], [], "p"

    def flush():
        nonlocal cur
        if cur:
            blocks.append((kind, " ".join(cur)))
        cur = []

    for l in doc:
        if not l:
            flush()
            kind = "p"
        elif l.startswith("# "):
            flush()
            blocks.append(("h", l[2:].strip()))
            kind = "p"
        elif re.match(r"^[-*] ", l):
            flush()
            kind = "li"
            cur = [l[2:].strip()]
        else:
            cur.append(l.strip())
    flush()
    return blocks


def body(doc, para=".PP"):
    """Doc comment as roff; para is the paragraph request (.IP inside a tagged entry)."""
    out, need_para = [], False
    for kind, text in paragraphs(doc):
        if kind == "h":
            out.append(f".SS {esc(text)}")
            need_para = False
        elif kind == "li":
            out += [".IP \\(bu 2", line(inline(text))]
            need_para = True
        else:
            out += ([para] if need_para else []) + [line(inline(text))]
            need_para = True
    return out


def summary(doc):
    """The first sentence, for the NAME line: plain text, no final period, lower-cased
    first letter unless the first word is an acronym or identifier."""
    text = paragraphs(doc)[0][1] if doc else ""
    m = re.match(r"^(.*?\.)(\s|$)", text)
    text = (m.group(1) if m else text).rstrip(".").replace("`", "")
    if re.match(r"^[A-Z][a-z]", text):
        text = text[0].lower() + text[1:]
    return text


def proto(ret, name, args, prefix=""):
    """A declaration for a synopsis: bold, parameter names italic, one parameter per line
    when it would not fit in 78 columns."""
    head = f"{prefix}{ret}{'' if ret.endswith('*') else ' '}{name}("
    parts = []
    for ctype, pname in args:
        if pname and "(*" in ctype:  # function pointer parameter: the name goes inside
            a, b = ctype.split("(*", 1)
            parts.append((f"{a}(*", pname, f"{b}"))
        else:
            sep = "" if ctype.endswith("*") or not pname else " "
            parts.append((ctype + sep, pname, ""))
    if not parts:
        parts = [("void", "", "")]
    flat = head + ", ".join(a + n + b for a, n, b in parts) + ");"
    rows, cur = [], head
    for i, (a, n, b) in enumerate(parts):
        end = ");" if i == len(parts) - 1 else ","
        piece = f"{esc(a)}\\fI{esc(n)}\\fB{esc(b)}{end}" if n else f"{esc(a)}{esc(b)}{end}"
        if len(flat) <= 78:
            cur += piece + ("" if end == ");" else " ")
        else:
            rows.append(cur + piece)
            cur = " " * len(head)
    if len(flat) <= 78:
        rows = [cur]
    return [f"\\fB{r}\\fR" for r in rows]


class Pages:
    def __init__(self, decls, version, date):
        self.decls = decls
        self.version, self.date = version, date
        self.by_name = {d.name: d for d in decls}
        self.macros = [d for d in decls if d.kind == "macro"]
        # Struct/enum/opaque -> the typedef naming it, which names the page.
        self.alias_of = {d.target.split()[1]: d for d in decls if d.kind == "alias"}
        # Callback typedef -> the typedef'd struct holding it.
        # and a callback field's name (sync_free_func) -> that struct's page, for SEE ALSO.
        self.fnptr_home, self.field_home = {}, {}
        for d in decls:
            if d.kind == "struct" and d.name in self.alias_of:
                for m in d.members:
                    if self.by_name.get(m.ctype, None) and self.by_name[m.ctype].kind == "fnptr":
                        self.fnptr_home.setdefault(m.ctype, self.alias_of[d.name].name)
                        self.field_home.setdefault(m.name, self.alias_of[d.name].name)
        self.pages = {}  # page name -> roff lines
        self.links = {}  # link name -> page name

    def page_of(self, name):
        """The page documenting a name, or None."""
        d = self.by_name.get(name)
        if not d:
            return self.field_home.get(name)
        if d.kind == "function":
            return name
        if d.kind == "fnptr":
            return self.fnptr_home.get(name, name)
        if d.kind in ("struct", "enum", "opaque") and name in self.alias_of:
            return self.alias_of[name].name
        if d.kind == "alias":
            return name
        return None

    def see_also(self, own, texts, types=()):
        names = []
        for t in list(types) + re.findall(r"`(\w+)|\b(junos_sync_\w+)\b", " ".join(texts)):
            for n in (t if isinstance(t, tuple) else (t,)):
                p = self.page_of(n) if n else None
                if p and p != own and p not in names:
                    names.append(p)
        refs = [f".BR {esc(n).replace('-', chr(92) + '-')} (3)" for n in sorted(names)]
        refs.append(".BR junos\\-sync (7)")
        return [".SH SEE ALSO"] + [r + ("," if i < len(refs) - 1 else "") for i, r in enumerate(refs)]

    def constants(self, texts):
        text = " ".join(texts)
        used = [m for m in self.macros if re.search(rf"\b{m.name}\b", text)]
        if not used:
            return []
        out = [".SH CONSTANTS"]
        for m in used:
            out += [".TP", f"\\fB{esc(m.name)}\\fR = {esc(m.target)}"] + body(m.doc, ".IP")
        return out

    def head(self, name, names, doc):
        return [
            f".\\\" Generated by scripts/gen-man3.py from {HEADER_INCLUDE}; do not edit.",
            f'.TH {name.upper()} 3 {self.date} "junos-sync {self.version}" "junos-sync Library Functions"',
            ".SH NAME",
            f"{', '.join(esc(n) for n in names)} \\- {esc(summary(doc)).replace('-', chr(92) + '-')}",
            ".SH SYNOPSIS",
            ".nf",
            f".B #include <{HEADER_INCLUDE}>",
        ]

    def function(self, d):
        out = self.head(d.name, [d.name], d.doc)
        out += [".PP"] + proto(d.ret, d.name, d.args) + [".fi", ".PP",
                "Link with \\fI\\-ljunos\\-sync\\fR, or use",
                "\\fBpkg\\-config \\-\\-cflags \\-\\-libs junos\\-sync\\fR."]
        out += [".SH DESCRIPTION"] + body(d.doc)
        rtype = self.by_name.get(d.ret)
        if rtype is not None and rtype.kind == "alias" and rtype.target.startswith("enum"):
            out += [".SH RETURN VALUE",
                    f"One of the values of \\fB{esc(d.ret)}\\fR(3), as described above."]
        elif d.ret == "void":
            out += [".SH RETURN VALUE", "None."]
        texts = ["\n".join(d.doc)]
        out += self.constants(texts)
        types = [re.sub(r"[\s*]|const", "", t) for t, _ in d.args] + [d.ret.rstrip(" *")]
        out += self.see_also(d.name, texts, types)
        self.pages[d.name] = out

    def typedef(self, alias):
        d = self.by_name[alias.target.split()[1]]
        held = [self.by_name[m.ctype] for m in d.members if m.ctype in self.fnptr_home
                and self.fnptr_home[m.ctype] == alias.name]
        names = [alias.name] + [f.name for f in held]
        out = self.head(alias.name, names, d.doc)
        for f in held:
            out += [".PP"] + proto(f.ret, f"(*\\fI{esc(f.name)}\\fB)", f.args, "typedef ")
        out.append(".PP")
        tag = "enum" if d.kind == "enum" else "struct"
        if d.kind == "opaque":
            out.append(f"\\fBstruct {esc(d.name)};\\fR")
        else:
            out.append(f"\\fB{tag} {esc(d.name)} {{\\fR")
            for m in d.members:
                if d.kind == "enum":
                    out.append(f"\\fB    {esc(m.name)}{' = ' + esc(m.value) if m.value else ''},\\fR")
                else:
                    sep = "" if m.ctype.endswith("*") else " "
                    out.append(f"\\fB    {esc(m.ctype)}{sep}\\fI{esc(m.name)}\\fB{esc(m.value)};\\fR")
            out.append("\\fB};\\fR")
        out += [".PP", f"\\fBtypedef {tag} {esc(d.name)} {esc(alias.name)};\\fR", ".fi"]
        out += [".SH DESCRIPTION"] + body(d.doc)
        texts = ["\n".join(d.doc)]
        if d.members:
            out.append(".SH VALUES" if d.kind == "enum" else ".SH FIELDS")
        for m in d.members:
            out += [".TP", f"\\fB{esc(m.name)}\\fR"]
            f = self.by_name.get(m.ctype)
            if f is not None and f.kind == "fnptr" and f in held:
                out += body(f.doc, ".IP")
                texts.append("\n".join(f.doc))
            else:
                out += body(m.doc, ".IP")
            texts.append("\n".join(m.doc))
        out += self.constants(texts)
        out += self.see_also(alias.name, texts, [m.ctype.rstrip(" *") for m in d.members])
        self.pages[alias.name] = out
        for f in held:
            self.links[f.name] = alias.name

    def callback(self, f):
        out = self.head(f.name, [f.name], f.doc)
        out += [".PP"] + proto(f.ret, f"(*\\fI{esc(f.name)}\\fB)", f.args, "typedef ") + [".fi"]
        out += [".SH DESCRIPTION"] + body(f.doc)
        out += self.constants([" ".join(f.doc)])
        out += self.see_also(f.name, [" ".join(f.doc)], [t.rstrip(" *") for t, _ in f.args])
        self.pages[f.name] = out

    def build(self):
        for d in self.decls:
            if d.kind == "function":
                self.function(d)
            elif d.kind == "alias":
                self.typedef(d)
        for d in self.decls:
            if d.kind == "fnptr" and d.name not in self.fnptr_home:
                self.callback(d)


def scdoc_index(pages):
    """The functions and types with their summaries, as scdoc text for junos-sync(7)."""
    def scd(text):
        return re.sub(r"([\\*_])", r"\\\1", text)

    out = []
    for kind in ("function", "alias"):
        for d in pages.decls:
            if d.kind == kind and d.name in pages.pages:
                doc = d.doc if kind == "function" else pages.by_name[d.target.split()[1]].doc
                out += [f"*{scd(d.name)}*(3)", f"\t{scd(summary(doc))}", ""]
    return "\n".join(out).rstrip() + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[2])
    ap.add_argument("--version", default="")
    ap.add_argument("--date", default="")
    ap.add_argument("--index", help="also write the scdoc list of pages for junos-sync(7) here")
    ap.add_argument("header")
    ap.add_argument("outdir")
    a = ap.parse_args()
    try:
        decls = header_api.parse(a.header)
    except (header_api.HeaderError, OSError) as e:
        sys.exit(f"gen-man3.py: {a.header}: {e}")
    pages = Pages(decls, a.version, a.date)
    pages.build()
    os.makedirs(a.outdir, exist_ok=True)
    for name, lines in pages.pages.items():
        with open(os.path.join(a.outdir, f"{name}.3"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    for name, target in pages.links.items():
        path = os.path.join(a.outdir, f"{name}.3")
        if os.path.lexists(path):
            os.remove(path)
        os.symlink(f"{target}.3", path)
    if a.index:
        with open(a.index, "w", encoding="utf-8") as f:
            f.write(scdoc_index(pages))
    missing = [d.name for d in header_api.functions(decls) if d.name not in pages.pages]
    if missing:
        sys.exit(f"gen-man3.py: no page for {', '.join(missing)}")


if __name__ == "__main__":
    main()
