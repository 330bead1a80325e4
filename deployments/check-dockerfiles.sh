#!/usr/bin/env bash
# Checks the Dockerfiles in deployments/docker without a Docker engine:
#
#  1. every COPY source (the build context is the repository root) exists,
#     and so does every package a `go build` in a RUN line names;
#  2. with --build, the build stage is replayed: the COPY sources are copied
#     into an empty directory the way Docker would (so a file the build needs
#     but no COPY brings is missed here as it would be there) and the RUN
#     line's `go build` commands are run in it with CGO_ENABLED=0, and each
#     binary must be statically linked.
#
# Usage: deployments/check-dockerfiles.sh [--build] [Dockerfile...]
set -euo pipefail
cd "$(dirname "$0")/.."

build=false
if [[ "${1:-}" == "--build" ]]; then
  build=true
  shift
fi
files=("$@")
if [[ ${#files[@]} -eq 0 ]]; then
  files=(deployments/docker/Dockerfile.*)
fi

fail=0
err() { echo "check-dockerfiles: $*" >&2; fail=1; }

# instructions FILE: the instructions of FILE, one a line, continuation
# lines joined and comments dropped.
instructions() {
  sed -e 's/^[[:space:]]*#.*$//' "$1" | awk '
    /\\[[:space:]]*$/ { sub(/\\[[:space:]]*$/, ""); line = line $0 " "; next }
    { line = line $0; if (line ~ /[^[:space:]]/) print line; line = "" }'
}

for df in "${files[@]}"; do
  [[ -f "$df" ]] || { err "$df: no such file"; continue; }
  echo "== $df"
  copies=()   # "src dest" pairs of the build stage
  builds=()   # go build commands
  stage=0
  while IFS= read -r line; do
    read -r -a words <<<"$line"
    instr="${words[0]^^}"
    case "$instr" in
      FROM) stage=$((stage + 1)) ;;
      COPY|ADD)
        args=()
        from=false
        for w in "${words[@]:1}"; do
          case "$w" in
            --from=*) from=true ;;
            --*) ;;
            *) args+=("$w") ;;
          esac
        done
        $from && continue # from another stage, not the context
        if [[ ${#args[@]} -lt 2 ]]; then
          err "$df: $instr needs a source and a destination: $line"
          continue
        fi
        dest="${args[-1]}"
        for src in "${args[@]:0:${#args[@]}-1}"; do
          if ! compgen -G "$src" >/dev/null; then
            err "$df: COPY source $src does not exist"
            continue
          fi
          [[ $stage -eq 1 ]] && copies+=("$src $dest")
        done
        ;;
      RUN)
        if [[ "$line" == *"go build"* ]]; then
          # each `go build ...` of the line, up to && or ;
          while IFS= read -r cmd; do
            [[ -n "$cmd" ]] || continue
            builds+=("$cmd")
            for pkg in $(grep -oE '(^|[[:space:]])\./[A-Za-z0-9_./-]+' <<<"$cmd"); do
              dir="${pkg#./}"
              dir="${dir%/...}"
              if ! compgen -G "$dir/*.go" >/dev/null; then
                err "$df: go build package ./$dir has no Go files"
              fi
            done
          done < <(grep -oE 'go build[^&;]*' <<<"$line")
        fi
        ;;
    esac
  done < <(instructions "$df")
  [[ ${#builds[@]} -gt 0 ]] || err "$df: no go build found"

  if $build && [[ $fail -eq 0 ]]; then
    ctx=$(mktemp -d)
    trap 'rm -rf "$ctx"' EXIT
    for pair in "${copies[@]}"; do
      src="${pair% *}"
      dest="${pair#* }"
      dest="${dest#./}"
      mkdir -p "$ctx/$dest"
      for s in $src; do
        if [[ -d "$s" ]]; then
          (cd "$s" && tar --exclude='*.test' --exclude='*.out' -cf - .) | tar -xf - -C "$ctx/$dest"
        else
          cp "$s" "$ctx/$dest"
        fi
      done
    done
    for cmd in "${builds[@]}"; do
      # replace the image's output paths with the scratch directory
      cmd="${cmd//\/out\//$ctx/out/}"
      echo "   $cmd"
      if ! (cd "$ctx" && CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly" bash -c "$cmd"); then
        err "$df: the build stage fails with only the COPY sources: $cmd"
      fi
    done
    for bin in "$ctx"/out/*; do
      [[ -f "$bin" ]] || continue
      if command -v file >/dev/null && ! file "$bin" | grep -q 'statically linked'; then
        err "$df: $(basename "$bin") is not statically linked"
      fi
    done
    rm -rf "$ctx"
    trap - EXIT
  fi
done
if [[ $fail -ne 0 ]]; then
  exit 1
fi
echo "check-dockerfiles: ok"
