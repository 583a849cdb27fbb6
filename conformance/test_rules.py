"""Every rule, in every scenario that can show it, against the endpoint.

Items are generated per (scenario, rule): ``openai/plain/openai.done`` fails when the plain
text stream of the OpenAI API does not end with ``data: [DONE]``. The scenario's request is
sent once and its result shared by all of its rules.
"""


def test_rule(rule_case, conformance):
    conformance.check(rule_case)
