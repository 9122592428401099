// kafkajs against Chronik. Run by tests/python/test_kafkajs.py:
//   node kafkajs_check.js basic BOOTSTRAP TOPIC
//   node kafkajs_check.js failover BOOTSTRAP TOPIC   (waits for "go" on stdin
//     after the first 100 records, while the test kills the leader)
// Prints one JSON line with what it saw; exits non-zero on any failure.
const { Kafka, logLevel } = require("kafkajs");
const readline = require("readline");

const [mode, bootstrap, topic] = process.argv.slice(2);
const kafka = new Kafka({
  clientId: "chronik-kafkajs-test",
  brokers: bootstrap.split(","),
  logLevel: logLevel.NOTHING,
  retry: { retries: 20, initialRetryTime: 200, maxRetryTime: 2000 },
});

function assert(condition, message) {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}

async function produce(values, partition) {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    for (let i = 0; i < values.length; i += 10) {
      const messages = values.slice(i, i + 10).map((value) => ({ value, partition }));
      await producer.send({ topic, acks: -1, messages });
    }
  } finally {
    await producer.disconnect();
  }
}

// Reads `count` records in `groupId`, committing each, and returns their values.
async function consume(groupId, count) {
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, rebalanceTimeout: 10000 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const values = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`read ${values.length} of ${count} records`)), 60000);
    consumer
      .run({
        autoCommitThreshold: 1,
        eachMessage: async ({ message }) => {
          values.push(message.value.toString());
          if (values.length === count) {
            clearTimeout(timer);
            resolve();
          }
        },
      })
      .catch(reject);
  });
  await consumer.commitOffsets([]).catch(() => {});
  await consumer.disconnect();
  return values;
}

async function basic() {
  const admin = kafka.admin();
  await admin.connect();
  const groupId = `${topic}-group`;
  try {
    assert(await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true }), "created");
    assert((await admin.listTopics()).includes(topic), "listed");
    await admin.createPartitions({ topicPartitions: [{ topic, count: 3 }] });
    const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
    assert(metadata.topics[0].partitions.length === 3, "three partitions");

    const first = Array.from({ length: 60 }, (_, i) => `v${i}`);
    await produce(first);
    const read = await consume(groupId, 60);
    assert(JSON.stringify([...read].sort()) === JSON.stringify([...first].sort()), "read what was sent");

    const offsets = await admin.fetchOffsets({ groupId, topics: [topic] });
    const committed = offsets[0].partitions.reduce((sum, p) => sum + Number(p.offset), 0);
    assert(committed === 60, `committed ${committed}`);
    const groups = (await admin.listGroups()).groups.map((g) => g.groupId);
    assert(groups.includes(groupId), "group listed");

    const more = Array.from({ length: 20 }, (_, i) => `w${i}`);
    await produce(more);
    const resumed = await consume(groupId, 20);
    assert(JSON.stringify([...resumed].sort()) === JSON.stringify([...more].sort()), "resumed at the commit");

    const configs = await admin.describeConfigs({ resources: [{ type: 2, name: topic }], includeSynonyms: false });
    const entries = Object.fromEntries(configs.resources[0].configEntries.map((e) => [e.configName, e.configValue]));
    assert(entries["retention.ms"] === "604800000", "retention.ms described");
    await admin.alterConfigs({
      resources: [{ type: 2, name: topic, configEntries: [{ name: "retention.ms", value: "3600000" }] }],
    });
    const low = await admin.fetchTopicOffsets(topic);
    assert(low.reduce((sum, p) => sum + Number(p.high), 0) === 80, "high watermarks");
    await admin.deleteGroups([groupId]);
    await admin.deleteTopics({ topics: [topic] });
    return { committed, read: read.length, resumed: resumed.length };
  } finally {
    await admin.disconnect();
  }
}

async function failover() {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 3 }], waitForLeaders: true });
  await admin.disconnect();
  const before = Array.from({ length: 100 }, (_, i) => `a${i}`);
  await produce(before, 0);
  console.log("PHASE1_DONE");
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (line.trim() === "go") break;
  }
  lines.close();
  const after = Array.from({ length: 100 }, (_, i) => `b${i}`);
  await produce(after, 0);
  const read = await consume(`${topic}-group`, 200);
  assert(JSON.stringify(read) === JSON.stringify([...before, ...after]), "every record once, in order");
  return { read: read.length };
}

const scenarios = { basic, failover };
scenarios[mode]()
  .then((result) => {
    console.log(JSON.stringify({ ok: true, ...result }));
    process.exit(0);
  })
  .catch((error) => {
    console.log(JSON.stringify({ ok: false, error: String(error && error.stack ? error.stack : error) }));
    process.exit(1);
  });
