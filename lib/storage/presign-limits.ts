/** SigV4 presigned URLs live at most a week (AWS: "Authenticating Requests: Using Query Parameters"). */
export const MAX_PRESIGN_SECONDS = 7 * 24 * 60 * 60;
