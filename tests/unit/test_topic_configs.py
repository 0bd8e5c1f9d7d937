"""A topic the broker will not describe is an error, never a topic without configs.

kafka-python's ``describe_configs`` drops the per-topic error code of a DescribeConfigs answer, so a
topic whose configs a real cluster refuses to show (a missing DescribeConfigs ACL: code 29,
TopicAuthorizationFailed) would read as one with no config, hence Kafka's default ``delete``, and the
worker would refuse to start for a problem it made up. The embedded broker (Tansu 0.6) answers every
DescribeConfigs with error 0, even for a topic that does not exist, so the answer is built here as
bytes on the wire with kafka-python's own protocol classes and read back the way the adapter reads the
broker's.
"""

from __future__ import annotations

from kafka.protocol.admin import DescribeConfigsResponse

from streams.adapters.topics import configs_of

_Result = DescribeConfigsResponse.DescribeConfigsResult
_Config = _Result.DescribeConfigsResourceResult


def _answer(*results: object) -> object:
    sent = DescribeConfigsResponse(version=4, throttle_time_ms=0, results=list(results)).encode(version=4)
    return DescribeConfigsResponse.decode(bytes(sent), version=4)


def test_a_denied_topic_reads_as_its_error_and_a_described_one_as_its_configs() -> None:
    denied = _Result(version=4, error_code=29, error_message="not authorized", resource_type=2,
                     resource_name="slo-stream-app-engine-changelog", configs=[])
    empty = _Result(version=4, error_code=0, error_message=None, resource_type=2, resource_name="k8s.rollouts",
                    configs=[])
    policy = _Config(version=4, name="cleanup.policy", value="compact", read_only=False, config_source=1,
                     is_sensitive=False, synonyms=[], config_type=2, documentation=None)
    secret = _Config(version=4, name="sasl.jaas.config", value=None, read_only=False, config_source=1,
                     is_sensitive=True, synonyms=[], config_type=9, documentation=None)
    compacted = _Result(version=4, error_code=0, error_message=None, resource_type=2, resource_name="slo.status",
                        configs=[policy, secret])
    got = configs_of(_answer(denied, empty, compacted))
    assert got["slo-stream-app-engine-changelog"] == "TopicAuthorizationFailedError: not authorized"
    assert got["k8s.rollouts"] == {}, "error 0 and no configs: the broker reports nothing (Kafka defaults apply)"
    assert got["slo.status"] == {"cleanup.policy": "compact"}, "a value the broker hides (null) is left out"
