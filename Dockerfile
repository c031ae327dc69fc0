# The exchange-ledger services image: one image, the command picks the role (gate, relay, ...).
# Third-party packages come from requirements.lock (Linux x86_64, CPython 3.11): wheels only, each
# checked against its hash, the versions the tests ran. No extras: the embedded broker and the test
# tools are development-only and stay out.
FROM python:3.11-slim
WORKDIR /app
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes --only-binary=:all: -r requirements.lock
COPY pyproject.toml README.md ./
COPY services ./services
COPY schemas ./schemas
COPY ledger ./ledger
COPY policies ./policies
# The project itself, built with the locked setuptools: nothing fetched, nothing unhashed.
RUN pip install --no-cache-dir --no-deps --no-build-isolation . && pip check \
    && useradd --system --uid 10001 xledger
USER xledger
ENTRYPOINT ["xledger"]
CMD ["--help"]
