# shellcheck shell=bash
# Read by every non-interactive bash that cargo's processes start (BASH_ENV, set in
# .cargo/config.toml). It acts only in the build script of rdkafka-sys, where librdkafka's configure
# runs: there it lets configure find and link the static libcurl that curl-sys built (its root is
# DEP_CURL_ROOT, the library in its build/ folder), so the OIDC token fetcher is compiled in.
if [[ "${CARGO_PKG_NAME:-}" == rdkafka-sys && -n "${DEP_CURL_ROOT:-}" && -z "${FLEETLOAD_CURL_ENV_DONE:-}" ]]; then
    export FLEETLOAD_CURL_ENV_DONE=1
    export CFLAGS="${CFLAGS:-} -DCURL_STATICLIB -I${DEP_CURL_ROOT}/include"
    export LDFLAGS="${LDFLAGS:-} -L${DEP_CURL_ROOT}/build"
    # libcurl.a's own dependencies, for configure's link check (the final link gets them from
    # the curl-sys, openssl-sys and libz-sys crates).
    _fleetload_libs="-lcurl"
    if [[ -n "${DEP_OPENSSL_ROOT:-}" ]]; then
        export LDFLAGS="${LDFLAGS} -L${DEP_OPENSSL_ROOT}/lib"
        _fleetload_libs="${_fleetload_libs} -lssl -lcrypto"
    fi
    if [[ -n "${DEP_Z_ROOT:-}" ]]; then
        export LDFLAGS="${LDFLAGS} -L${DEP_Z_ROOT}/lib"
        _fleetload_libs="${_fleetload_libs} -lz"
    fi
    export LIBS="${LIBS:-} ${_fleetload_libs} -lpthread -ldl"
    unset _fleetload_libs
fi
