# execd in a container (docs/IMAGES.md). Three stages, so that only what runs reaches the
# runtime image: execd is compiled in `build`, the TypeScript/JavaScript kernels are
# installed with npm in `kernels`, and `runtime` gets the binary, the kernels and the
# run-time packages only (no compiler, no npm, no Boost, no scipy).
#
#   make images                      # builds the debian:bookworm-slim base locally, then this
#   docker build -t execd .
#   docker run --rm -p 44772:44772 execd                        # as the user `execd` (uid 1000)
#   docker run --rm --user root -p 44772:44772 execd            # opt-in: as root
#   docker run --rm --runtime=runsc -p 44772:44772 execd        # under gVisor
#
# Behind a TLS-inspecting proxy, pass its CA certificate (PEM text) so npm trusts it:
#   docker build --build-arg EXTRA_CA_CERT="$(cat corp-ca.pem)" -t execd .
ARG BASE=debian:bookworm-slim

# xterm.js for the browser console, the versions `make ui-vendor` pins; embedded into
# execd at build time (src/api/meson.build reads .ui-vendor/node_modules).
FROM ${BASE} AS ui
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ARG EXTRA_CA_CERT=""
RUN if [ -n "$EXTRA_CA_CERT" ]; then printf '%s\n' "$EXTRA_CA_CERT" > /usr/local/share/ca-certificates/build-extra.crt \
      && update-ca-certificates; fi \
 && NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
    npm install --prefix /opt/ui-vendor --no-audit --no-fund --loglevel=error xterm@5.3.0 xterm-addon-fit@0.8.0

FROM ${BASE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      meson ninja-build pkg-config g++ python3 \
      libcpp-httplib-dev nlohmann-json3-dev libzmq3-dev cppzmq-dev libspdlog-dev doctest-dev libssl-dev \
      libre2-dev libarchive-dev libsqlite3-dev libyaml-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY meson.build meson_options.txt ./
COPY src ./src
COPY tests ./tests
COPY bench ./bench
COPY subprojects ./subprojects
COPY tools ./tools
COPY ui ./ui
COPY --from=ui /opt/ui-vendor/node_modules ./.ui-vendor/node_modules
RUN meson setup /build --buildtype=release -Dwerror=true && ninja -C /build execd && strip /build/execd

FROM ${BASE} AS kernels
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# Declared here, after apt, so a certificate does not invalidate the apt layer's cache.
ARG EXTRA_CA_CERT=""
# tslab as `make kernels` installs it; @types/node matches Debian's Node 18.
RUN if [ -n "$EXTRA_CA_CERT" ]; then printf '%s\n' "$EXTRA_CA_CERT" > /usr/local/share/ca-certificates/build-extra.crt \
      && update-ca-certificates; fi \
 && NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
    npm install --prefix /opt/tslab --no-audit --no-fund --loglevel=error tslab@1.0.22 @types/node@18 \
 && npm cache clean --force

FROM ${BASE} AS runtime
# Run-time libraries of execd, and what its kernels and commands use. python3-munkres and
# python3-unicodedata2 are named so apt satisfies python3-fonttools' alternatives with them
# rather than with python3-scipy, which pulls in pythran, g++ and the Boost headers.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libcpp-httplib0.11 libzmq5 libspdlog1.10 libfmt9 libssl3 libre2-9 libarchive13 \
      bash procps ca-certificates tini nodejs \
      python3-ipykernel python3-numpy python3-pandas python3-matplotlib \
      python3-munkres python3-unicodedata2 python3-ufolib2 \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*
COPY --from=kernels /opt/tslab /opt/tslab
RUN /opt/tslab/node_modules/.bin/tslab install --python /usr/bin/python3 \
      --binary /opt/tslab/node_modules/.bin/tslab --prefix /usr/local
COPY --from=build /build/execd /usr/local/bin/execd
# Not root by default: code the agents send runs as this user. `--user root` opts in.
RUN useradd --create-home --uid 1000 --shell /bin/bash execd
USER execd
WORKDIR /home/execd
EXPOSE 44772
# tini reaps orphans re-parented to pid 1 and forwards SIGTERM to execd.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/execd", "--host", "0.0.0.0", "--port", "44772"]
