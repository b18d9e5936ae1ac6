#!/usr/bin/python3
"""A PNG of one section of a `moelab report` page, rendered by headless Chromium.

    scripts/report_png.py REPORT.html SECTION_ID OUT.png [--width 1280] [--height 1100]

SECTION_ID is the id of a <section> of the page: results, curves, routing, load, cooc,
domains, runs. The section is copied with the page's <head> (its inline CSS) into a
page of its own, which Chromium (Debian's `chromium`) screenshots.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile


def main():
    args = sys.argv[1:]
    if len(args) < 3 or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if args and args[0] in ("-h", "--help") else 1
    page, section, out = args[:3]
    opts = dict(zip(args[3::2], args[4::2]))
    width, height = int(opts.get("--width", 1280)), int(opts.get("--height", 1100))
    html = open(page, encoding="utf-8").read()
    head = re.search(r"<head>.*?</head>", html, re.S)
    body = re.search(r'<section id="%s".*?</section>' % re.escape(section), html, re.S)
    if not head or not body:
        print("report_png.py: %s has no <head> or no section '%s'" % (page, section), file=sys.stderr)
        return 1
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        print("report_png.py: chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        one = os.path.join(tmp, "section.html")
        with open(one, "w", encoding="utf-8") as f:
            f.write("<!DOCTYPE html><html>%s<body>%s</body></html>" % (head.group(0), body.group(0)))
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--user-data-dir=" + os.path.join(tmp, "profile"), "--window-size=%d,%d" % (width, height),
               "--screenshot=" + os.path.abspath(out), "file://" + one]
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
    if r.returncode != 0 or not os.path.exists(out) or os.path.getsize(out) == 0:
        print("report_png.py: chromium failed: %s" % r.stderr.decode(errors="replace")[-400:], file=sys.stderr)
        return 1
    print("wrote %s (%d x %d, section %s of %s)" % (out, width, height, section, page))
    return 0


if __name__ == "__main__":
    sys.exit(main())
