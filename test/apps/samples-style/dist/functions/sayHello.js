const df = require("durable-functions");

df.app.activity("sayHello", { handler: (city) => `Hello, ${city}!` });
