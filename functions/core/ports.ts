/** The ports every capability shares: workspaces and the clock. Adapters implement them, tests pass fakes. */

export interface Subject {
  id: string;
  plan: string;
  billingAnchorDay: number;
  timeZone: string;
  contacts: string[];
  name?: string;
  /** When the workspace was created; its first cycle close is of the cycle containing this instant. */
  createdAt?: string;
  /**
   * `account`: an enterprise account above workspaces, whose credit balance its pooled workspaces share. It has
   * a plan, a cycle and contacts as a workspace does, and no events of its own. Absent: a workspace.
   */
  kind?: 'account';
  /** Of a workspace: the account whose credit balance it draws on (its credits count there too). */
  account?: string;
  /** Of a pooled workspace: its workspace group within the account (the account's rankings by group). */
  workspaceGroup?: string;
}

export interface SubjectDirectory {
  /** The subjects that exist among `ids`; unknown ids are absent from the map. */
  getMany(ids: readonly string[]): Promise<Map<string, Subject>>;
}

export interface SubjectStore extends SubjectDirectory {
  get(id: string): Promise<Subject | undefined>;
  put(subject: Subject): Promise<void>;
  list(): Promise<Subject[]>;
  /** The workspaces pooled in an account (those that name it as their `account`), by id. */
  pooledIn(account: string): Promise<Subject[]>;
}

export interface Clock {
  now(): Date;
}
