# The exchange-ledger services image: one image, the command picks the role (gate, relay, ...).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY services ./services
COPY schemas ./schemas
COPY ledger ./ledger
COPY policies ./policies
RUN pip install --no-cache-dir . && useradd --system --uid 10001 xledger
USER xledger
ENTRYPOINT ["xledger"]
CMD ["--help"]
