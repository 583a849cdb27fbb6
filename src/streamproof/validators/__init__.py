"""The protocol's judges: one stream model per API (``openai_model``, ``anthropic_model``)
that parses each event once, and the rules as checks registered by catalogue id
(``registry``), grouped by area; ``answers`` judges the HTTP answer as a whole."""
