#!/usr/bin/env bash
# The demo's --plot figure opened in a real browser (issue 29): headless
# Chromium (Debian's `chromium`) loads the SVG the demo wrote, reports its
# DOM and takes a screenshot at the figure's own size.
#
#   bash em-demo/tests/chromium_screenshot.sh [OUT_DIR]
#
# Leaves OUT_DIR/figure.svg (a short demo run with every panel: --interval,
# --switch-every, --after-up, --watermarks both) and OUT_DIR/figure.png, the
# screenshot, to look at. Checks that Chromium parsed the file as SVG (no
# <parsererror> in its DOM), that the screenshot has the figure's size, and
# that it is not blank (a blank page of the same size compresses to a small
# fraction of a drawn figure's PNG). Exit 0: rendered; 1: failed; 77:
# skipped, no chromium on PATH (install it with `apt-get install -y
# chromium` as root). MPSAFE_DEMO overrides the demo command (default:
# cargo run --release -q -p mpsafe-em-demo --).
set -euo pipefail
cd "$(dirname "$0")/../.."

out=${1:-$(mktemp -d)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "chromium_screenshot: SKIPPED: no chromium on PATH (apt-get install -y chromium)"
  exit 77
fi

read -r -a demo <<<"${MPSAFE_DEMO:-cargo run --release -q -p mpsafe-em-demo --}"
"${demo[@]}" --mode all --seconds 0.5 --cycles 0 --interval 0.1 --switch-every 0.4 \
  --after-up --watermarks both --plot "$out/figure.svg" >"$out/report.txt"

svg_attr() { sed -n "s/^<svg [^>]*$1=\"\([0-9]*\)\".*/\1/p" "$out/figure.svg" | head -1; }
width=$(svg_attr width)
height=$(svg_attr height)
[ -n "$width" ] && [ -n "$height" ] || { echo "no width/height on the <svg> element"; exit 1; }

chrome() {
  # Only the local file: no network, no sync, no first-run, a throwaway profile.
  local profile
  profile=$(mktemp -d)
  timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --window-size="$width,$height" "$@" 2>/dev/null
  rm -rf "$profile"
}

# Parsed as SVG: Chromium's DOM of a file with an XML error holds a
# <parsererror> element instead of the drawing.
chrome --dump-dom "file://$out/figure.svg" >"$out/dom.txt"
if grep -qi parsererror "$out/dom.txt" || ! grep -q '<svg' "$out/dom.txt"; then
  echo "chromium did not parse $out/figure.svg as SVG:"
  head -c 2000 "$out/dom.txt"
  exit 1
fi

chrome --screenshot="$out/figure.png" "file://$out/figure.svg" >/dev/null
printf '<svg xmlns="http://www.w3.org/2000/svg" width="%s" height="%s"/>\n' "$width" "$height" >"$out/blank.svg"
chrome --screenshot="$out/blank.png" "file://$out/blank.svg" >/dev/null

# PNG header: the IHDR's width and height, big-endian, at bytes 16..23.
png_size() { od -An -tu1 -j16 -N8 "$1" | awk '{ printf "%d %d", $1*16777216+$2*65536+$3*256+$4, $5*16777216+$6*65536+$7*256+$8 }'; }
got=$(png_size "$out/figure.png")
[ "$got" = "$width $height" ] || { echo "screenshot is $got, the figure $width x $height"; exit 1; }
drawn=$(stat -c %s "$out/figure.png")
blank=$(stat -c %s "$out/blank.png")
if [ "$drawn" -lt $((blank * 5)) ]; then
  echo "screenshot looks blank: $drawn bytes against $blank for an empty page of the same size"
  exit 1
fi
echo "chromium_screenshot: $out/figure.svg rendered by $("$browser" --version 2>/dev/null | head -1):"
echo "  $out/figure.png, $width x $height, $drawn bytes (an empty page: $blank)"
