/**
 * The service worker: shows a resident's Web Push notifications (served at /sw.js, so
 * its scope is the whole site). The server sends the text, already translated, as JSON:
 * {title, body, url, tag}; a tap opens (or focuses) the ticket's page.
 */

self.addEventListener("push", (event) => {
  let message = {};
  try {
    message = event.data ? event.data.json() : {};
  } catch {
    return;
  }
  if (!message.title) return;
  event.waitUntil(
    self.registration.showNotification(message.title, {
      body: message.body || "",
      tag: message.tag || undefined,
      data: { url: message.url || "/" },
      requireInteraction: true,
      vibrate: [400, 200, 400],
    }),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = (event.notification.data && event.notification.data.url) || "/";
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
      const path = new URL(url, self.location.origin).pathname;
      for (const client of windows) {
        if (new URL(client.url).pathname === path && "focus" in client) return client.focus();
      }
      return self.clients.openWindow(url);
    }),
  );
});
