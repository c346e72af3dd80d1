// The web app chat-local serves, in headless Chromium (Debian's, driven by
// playwright-core): alice and bob sign in in two browser contexts and chat; bob goes
// offline, alice sends three messages, bob comes back and sees each once, in order, and
// alice's ticks turn to read. carol writes while offline and closes the tab: her
// messages wait in IndexedDB and go out once when she opens the app again; she edits and
// deletes with the message buttons. Screenshots go to target/browser/.
//
//   npm run test:browser     (needs /usr/bin/chromium, or CHROMIUM=path)

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium, type Browser, type Page } from "playwright-core";

import { Server, unique } from "../test/harness.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const SHOTS = path.resolve(here, "../../../../target/browser");

let server: Server;
let browser: Browser;

before(async () => {
  // No CHAT_JWT_SECRET: the development secret, with which the app's sign-in exists.
  server = await Server.start({ CHAT_JWT_SECRET: "" });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  mkdirSync(SHOTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function signIn(user: string) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 640 } });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(server.url);
  await page.getByTestId("login-user").fill(user);
  await page.getByTestId("login-submit").click();
  await page.getByTestId("status").filter({ hasText: "online" }).waitFor();
  return { context, page, errors };
}

const texts = (page: Page) => page.getByTestId("message-text").allTextContents();

test("two people chat; one goes offline and comes back to every message once, in order, with read ticks", async () => {
  const [alice, bob] = [unique("alice"), unique("bob")];
  const a = await signIn(alice);
  const b = await signIn(bob);

  // alice starts a chat with bob and says hello; bob sees it in his list, unread.
  await a.page.getByTestId("new-direct-user").fill(bob);
  await a.page.getByTestId("new-direct-user").press("Enter");
  await a.page.getByTestId("composer-text").fill("hello bob");
  await a.page.getByTestId("send").click();
  const entry = b.page.getByTestId("conversation").filter({ hasText: alice });
  await entry.getByTestId("unread").filter({ hasText: "1" }).waitFor();
  await entry.click();
  await b.page.getByTestId("message-text").filter({ hasText: "hello bob" }).waitFor();
  await a.page.locator("[data-testid=tick][data-status=read]").first().waitFor();

  // bob's network goes; alice sends three messages meanwhile.
  await b.context.setOffline(true);
  await b.page.getByTestId("status").filter({ hasNotText: "online" }).waitFor();
  for (const text of ["one", "two", "three"]) {
    await a.page.getByTestId("composer-text").fill(text);
    await a.page.getByTestId("send").click();
  }
  await a.page.locator("[data-testid=tick][data-status=sent]").nth(2).waitFor();
  await a.page.screenshot({ path: path.join(SHOTS, "alice-while-bob-offline.png") });
  assert.deepEqual(await texts(b.page), ["hello bob"], "nothing reached bob while offline");

  // bob is back: each message once, in order; alice's ticks turn to read.
  await b.context.setOffline(false);
  await b.page.getByTestId("message-text").filter({ hasText: "three" }).waitFor();
  assert.deepEqual(await texts(b.page), ["hello bob", "one", "two", "three"]);
  await a.page.waitForFunction(
    () => Array.from(document.querySelectorAll("[data-testid=tick]")).every((t) => (t as HTMLElement).dataset.status === "read"),
  );
  await b.page.screenshot({ path: path.join(SHOTS, "bob-back-online.png") });
  await a.page.screenshot({ path: path.join(SHOTS, "alice-read.png") });

  // Typing shows on the other side; a reaction shows on both.
  await b.page.getByTestId("composer-text").fill("typing…");
  await a.page.getByTestId("typing").filter({ hasText: bob }).waitFor();
  await b.page.getByTestId("message").filter({ hasText: "two" }).getByRole("button", { name: "👍" }).click();
  await a.page.getByTestId("message").filter({ hasText: "two" }).locator(".reactions").filter({ hasText: "👍 1" }).waitFor();

  // An image: uploaded by alice (presigned PUT to the server), shown loaded on both sides.
  await a.page.getByTestId("attach").setInputFiles({ name: "dot.png", mimeType: "image/png", buffer: PNG });
  for (const page of [a.page, b.page]) {
    await page.waitForFunction(() =>
      Array.from(document.querySelectorAll("[data-testid=image]")).some((img) => (img as HTMLImageElement).naturalWidth > 0),
    );
  }
  await b.page.screenshot({ path: path.join(SHOTS, "bob-image.png") });

  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
});

test("messages written offline survive closing the tab and are sent once; group, edit and delete", async () => {
  const [carol, dave] = [unique("carol"), unique("dave")];
  const c = await signIn(carol);
  const d = await signIn(dave);

  // carol makes a group with dave through the app's form and says something.
  const group = `plans-${carol.slice(-6)}`;
  const form = c.page.getByTestId("new-group");
  await form.locator("input[name=name]").fill(group);
  await form.locator("input[name=members]").fill(dave);
  await form.getByRole("button", { name: "Create group" }).click();
  await c.page.getByTestId("title").filter({ hasText: group }).waitFor();
  await c.page.getByTestId("composer-text").fill("first");
  await c.page.getByTestId("send").click();
  await d.page.getByTestId("conversation").filter({ hasText: group }).click();
  await d.page.getByTestId("message-text").filter({ hasText: "first" }).waitFor();

  // Offline, carol writes two more: they wait in the outbox (IndexedDB), pending.
  await c.context.setOffline(true);
  await c.page.getByTestId("status").filter({ hasNotText: "online" }).waitFor();
  for (const text of ["second", "third"]) {
    await c.page.getByTestId("composer-text").fill(text);
    await c.page.getByTestId("send").click();
  }
  await c.page.locator("[data-testid=tick][data-status=pending]").nth(1).waitFor();
  await c.page.screenshot({ path: path.join(SHOTS, "carol-pending-offline.png") });
  // The app is closed before it could send them, and opened again once online.
  await c.page.close();
  await c.context.setOffline(false);
  const reopened = await c.context.newPage();
  const errors: string[] = [];
  reopened.on("pageerror", (e) => errors.push(e.message));
  await reopened.goto(server.url);
  await reopened.getByTestId("login-user").fill(carol);
  await reopened.getByTestId("login-submit").click();
  await reopened.getByTestId("conversation").filter({ hasText: group }).click();
  // The outbox, read back from IndexedDB, is sent: no tick stays pending.
  await reopened.waitForFunction(() => {
    const ticks = Array.from(document.querySelectorAll("[data-testid=tick]")) as HTMLElement[];
    return ticks.length === 3 && ticks.every((t) => t.dataset.status !== "pending");
  });

  await d.page.getByTestId("message-text").filter({ hasText: "third" }).waitFor();
  assert.deepEqual(await texts(d.page), ["first", "second", "third"], "each once, in order");
  assert.deepEqual(await texts(reopened), ["first", "second", "third"]);

  // carol edits "second" and deletes "third" with the message buttons.
  reopened.once("dialog", (dialog) => void dialog.accept("second, edited"));
  await reopened.getByTestId("message").filter({ hasText: "second" }).getByRole("button", { name: "edit" }).click();
  await reopened.getByTestId("message").filter({ hasText: "third" }).getByRole("button", { name: "delete" }).click();
  await d.page.getByTestId("message-text").filter({ hasText: "second, edited" }).waitFor();
  await d.page.getByTestId("message-text").filter({ hasText: "message deleted" }).waitFor();
  assert.deepEqual(await texts(d.page), ["first", "second, edited", "message deleted"]);
  assert.equal(await d.page.getByTestId("message").filter({ hasText: "second, edited" }).getByText("edited", { exact: true }).count(), 1);
  await d.page.screenshot({ path: path.join(SHOTS, "dave-edit-delete.png") });

  assert.deepEqual(c.errors, []);
  assert.deepEqual(errors, []);
  assert.deepEqual(d.errors, []);
});

/** A 16x16 red PNG. */
const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAIAAACQkWg2AAAAF0lEQVR4nGP4z8BAEiJN9aiGUQ1DSgMAkPn/Afnh+ngAAAAASUVORK5CYII=",
  "base64",
);

test("the sign-in exists only with the development secret", async () => {
  const configured = await Server.start();
  try {
    const response = await fetch(`${configured.url}/dev/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ userId: "mallory" }),
    });
    assert.equal(response.status, 404);
  } finally {
    await configured.stop();
  }
});
