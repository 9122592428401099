"""aiokafka (asyncio, its own protocol implementation) against Chronik:
produce, consume in a group, commit and resume, the admin calls, and a
leader failover on a three-node cluster."""

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

TIMEOUT = 60


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, TIMEOUT * 2))


async def consume(bootstrap, topic, group, count, **extra):
    """Reads `count` records in group `group`, commits, and returns their values."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False, **extra)
    await consumer.start()
    values = []
    try:
        async def read():
            async for msg in consumer:
                values.append(msg.value)
                if len(values) == count:
                    return
        await asyncio.wait_for(read(), TIMEOUT)
        await consumer.commit()
    finally:
        await consumer.stop()
    return values


async def produce(bootstrap, topic, values, partition=None):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, partition=partition)
    finally:
        await producer.stop()


def test_aiokafka_produce_group_commit_resume_and_admin(broker, topic_name):
    topic = topic_name("aio")
    group = topic_name("g")

    async def scenario():
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1,
                                                topic_configs={"retention.ms": "3600000"})])
            assert topic in await admin.list_topics()
            await admin.create_partitions({topic: NewPartitions(total_count=3)})
            configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
            entries = {c[0]: c[1] for c in configs[0].resources[0][4]}
            assert entries["retention.ms"] == "3600000"
            assert entries["cleanup.policy"] == "delete"

            values = [f"v{i}".encode() for i in range(60)]
            await produce(broker.bootstrap, topic, values)
            first = await consume(broker.bootstrap, topic, group, 60)
            assert sorted(first) == sorted(values)

            # The group's committed offsets are where a new member resumes.
            offsets = await admin.list_consumer_group_offsets(group)
            assert sum(meta.offset for meta in offsets.values()) == 60
            assert group in {g[0] for g in await admin.list_consumer_groups()}
            more = [f"w{i}".encode() for i in range(20)]
            await produce(broker.bootstrap, topic, more)
            second = await consume(broker.bootstrap, topic, group, 20)
            assert sorted(second) == sorted(more), "the resumed member read only what was new"

            await admin.delete_topics([topic])
            assert topic not in await admin.list_topics()
        finally:
            await admin.close()

    run(scenario())



def leader_of(cluster, topic, partition):
    for via in cluster.nodes:
        info = cluster.partition_info(topic, partition, via)
        if info and info.get("leader"):
            return info["leader"]
    return None


def test_aiokafka_through_a_leader_failover(cluster):
    topic = "aio-failover"
    bootstrap = cluster.bootstrap()

    async def scenario():
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3)])
        finally:
            await admin.close()
        await produce(bootstrap, topic, [f"a{i}".encode() for i in range(100)], partition=0)
        leader = leader_of(cluster, topic, 0)
        assert leader is not None
        cluster.nodes[leader].kill()
        # The client finds the new leader through Metadata and carries on.
        await produce(bootstrap, topic, [f"b{i}".encode() for i in range(100)], partition=0)
        values = await consume(bootstrap, topic, "aio-failover-group", 200)
        assert values == [f"a{i}".encode() for i in range(100)] + [f"b{i}".encode() for i in range(100)]
        return leader

    leader = run(scenario())
    cluster.nodes[leader].start(bootstrap=False)
    assert cluster.nodes[leader].wait_ready()
