// Node-RED settings of the benchmark peer (hil-tests/bench/compare.sh): headless (no editor,
// no HTTP nodes), flows from flow.json, the user dir given by compare.sh (--userDir). The
// window function reaches `fs` through the global context to write its stats file.
module.exports = {
    flowFile: "flow.json",
    credentialSecret: false,
    uiPort: Number(process.env.NODE_RED_PORT || 1880),
    uiHost: "127.0.0.1",
    httpAdminRoot: false,
    httpNodeRoot: false,
    disableEditor: true,
    logging: { console: { level: "warn", metrics: false, audit: false } },
    functionGlobalContext: { fs: require("fs") },
    contextStorage: { default: { module: "memory" } },
    exportGlobalContextKeys: false,
};
